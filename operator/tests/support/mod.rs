//! Test support: the `operator` binary as a child process scoped to a test
//! namespace, lease writes made the way the apiserver makes them (a
//! conditional status write computed by `berth_api::rules::decide`), and
//! small readers for targets, conditions and Events.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_api::crd::{Condition, ConditionStatus};
use berth_api::rules::{Outcome, Request, decide};
use berth_api::{BerthLease, Holder};
use berth_testenv::TestNamespace;
use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

/// The `operator` binary of this crate as a child process, scoped to one
/// test namespace; killed when dropped.
pub struct Operator(berth_testenv::operator::Operator);

impl Operator {
    /// Starts the operator with the admin kubeconfig, watching only `ns`.
    pub fn start(ns: &str, extra: &[&str]) -> Self {
        Self::start_as(&berth_testenv::kubeconfig_path(), ns, extra)
    }

    /// Starts the operator with `kubeconfig`, watching only `ns`.
    pub fn start_as(kubeconfig: &Path, ns: &str, extra: &[&str]) -> Self {
        let binary = Path::new(env!("CARGO_BIN_EXE_operator"));
        Self(berth_testenv::operator::Operator::start(binary, kubeconfig, &[ns], extra))
    }

    /// The value of one sample line of the metrics, 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.0.metric(sample)
    }
}

impl From<berth_testenv::operator::Operator> for Operator {
    fn from(operator: berth_testenv::operator::Operator) -> Self {
        Self(operator)
    }
}

impl std::ops::Deref for Operator {
    type Target = berth_testenv::operator::Operator;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Operator {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Renders `chart` (under `deploy/helm`) as release `release` in `namespace`
/// with `args` (`--show-only=…`, `--set…`) and applies the result with the
/// admin identity.
pub fn apply_chart(chart: &str, release: &str, namespace: &str, args: &[String]) {
    use std::io::Write;
    let rendered = std::process::Command::new(berth_testenv::helm())
        .args(["template", release])
        .arg(berth_testenv::repo_root().join("deploy/helm").join(chart))
        .arg(format!("--namespace={namespace}"))
        .args(args)
        .output()
        .expect("helm runs");
    assert!(rendered.status.success(), "helm template: {}", String::from_utf8_lossy(&rendered.stderr));
    let mut apply = berth_testenv::kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    apply.stdin.take().unwrap().write_all(&rendered.stdout).unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&applied.stderr));
}

/// A plain HTTP GET on 127.0.0.1: (status code, body).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    berth_testenv::http_get(port, path).expect("the port answers")
}

pub use berth_testenv::eventually;

/// A lease manifest.
pub fn lease(name: &str, spec: Value) -> BerthLease {
    serde_json::from_value(json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("a valid lease")
}

pub fn cronjob_target(name: &str) -> Value {
    json!({
        "target": {"apiVersion": "batch/v1", "kind": "CronJob", "name": name},
        "acquireAction": {"suspend": false},
        "releaseAction": {"suspend": true}
    })
}

pub async fn create_lease(ns: &TestNamespace, name: &str, spec: Value) -> BerthLease {
    ns.api::<BerthLease>().create(&PostParams::default(), &lease(name, spec)).await.expect("lease creates")
}

/// Applies one request the way the apiserver does: read, `decide`, write the
/// status conditionally (resourceVersion), and on a conflict read again.
pub async fn request(ns: &TestNamespace, name: &str, request: Request<'_>) -> Outcome {
    let api = ns.api::<BerthLease>();
    loop {
        let current = api.get(name).await.expect("lease reads");
        let decision = decide(&current.spec, &current.status.clone().unwrap_or_default(), &request, Utc::now());
        let Some(status) = decision.status else { return decision.outcome };
        let mut object = current.clone();
        object.status = Some(status);
        let params = PostParams { field_manager: Some("berth-test-holder".into()), ..Default::default() };
        match api.replace_status(name, &params, &object).await {
            Ok(_) => return decision.outcome,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => panic!("status write failed: {error}"),
        }
    }
}

/// Acquires `name` for `holder` and returns the holder entry.
pub async fn acquire(ns: &TestNamespace, name: &str, holder: &str, ttl_seconds: i32) -> Holder {
    match request(ns, name, Request::Acquire { holder, ttl_seconds }).await {
        Outcome::Granted(h) | Outcome::Renewed(h) => h,
        other => panic!("acquire refused: {other:?}"),
    }
}

pub async fn release(ns: &TestNamespace, name: &str, holder: &Holder) {
    let outcome =
        request(ns, name, Request::Release { holder: &holder.identity, fencing_token: holder.fencing_token }).await;
    assert_eq!(outcome, Outcome::Released);
}

pub async fn create_cronjob(ns: &TestNamespace, name: &str, suspend: bool) {
    let cronjob: CronJob = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"schedule": "*/5 * * * *", "suspend": suspend, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    ns.api::<CronJob>().create(&PostParams::default(), &cronjob).await.expect("cronjob creates");
}

pub async fn suspended(ns: &TestNamespace, name: &str) -> bool {
    ns.api::<CronJob>().get(name).await.expect("cronjob reads").spec.suspend.unwrap_or(false)
}

pub async fn create_deployment(ns: &TestNamespace, name: &str, replicas: i32) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
    }))
    .unwrap();
    ns.api::<Deployment>().create(&PostParams::default(), &deployment).await.expect("deployment creates");
}

pub async fn replicas(ns: &TestNamespace, name: &str) -> i32 {
    let scale = ns.api::<Deployment>().get_scale(name).await.expect("scale reads");
    scale.spec.and_then(|s| s.replicas).unwrap_or(0)
}

pub async fn get_lease(ns: &TestNamespace, name: &str) -> BerthLease {
    ns.api::<BerthLease>().get(name).await.expect("lease reads")
}

pub fn condition(lease: &BerthLease, type_: &str) -> Option<Condition> {
    lease.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Waits until condition `type_` has `status` and `reason`, and returns it.
pub async fn wait_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
) -> Condition {
    eventually(&format!("{name}: {type_}={status:?} {reason}"), Duration::from_secs(10), || async {
        condition(&get_lease(ns, name).await, type_).filter(|c| c.status == status && c.reason == reason)
    })
    .await
}

/// (type, reason, note) of the Events recorded on lease `namespace/name`.
pub async fn events_on(client: &kube::Client, namespace: &str, name: &str) -> Vec<(String, String, String)> {
    let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await.expect("events list");
    let mut events: Vec<_> =
        list.items.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// [`wait_event_on`] in the test namespace.
pub async fn wait_event(ns: &TestNamespace, name: &str, reason: &str) -> (String, String) {
    wait_event_on(&ns.client, &ns.name, name, reason).await
}

/// Waits for an Event with `reason` on lease `namespace/name` in any cluster, and returns its (type, note).
pub async fn wait_event_on(client: &kube::Client, namespace: &str, name: &str, reason: &str) -> (String, String) {
    eventually(&format!("Event {reason} on {name}"), Duration::from_secs(10), || async {
        events_on(client, namespace, name).await.into_iter().find(|(_, r, _)| r == reason).map(|(t, _, n)| (t, n))
    })
    .await
}

/// A kubeconfig for service account `berth-operator` in `ns`, bound to a Role
/// that allows what the operator needs on leases and Events, lists and
/// watches CronJobs and Jobs (not the apps kinds), but may `get` only the
/// CronJobs in `readable` and `patch` only those in `writable`.
pub fn restricted_kubeconfig(ns: &TestNamespace, readable: &[&str], writable: &[&str]) -> PathBuf {
    let kubectl_apply = |manifest: Value| {
        let mut child = berth_testenv::kubectl()
            .args(["apply", "-n", &ns.name, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(manifest.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    };
    let mut rules = vec![
        json!({"apiGroups": ["berth.skaphos.io"], "resources": ["berthleases"],
               "verbs": ["get", "list", "watch", "patch", "update"]}),
        json!({"apiGroups": ["berth.skaphos.io"], "resources": ["berthleases/status"], "verbs": ["get", "update", "patch"]}),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
        // No list/watch on the apps kinds: the operator must leave those unwatched and still serve.
        json!({"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": ["list", "watch"]}),
    ];
    if !readable.is_empty() {
        rules.push(
            json!({"apiGroups": ["batch"], "resources": ["cronjobs"], "resourceNames": readable, "verbs": ["get"]}),
        );
    }
    if !writable.is_empty() {
        rules.push(
            json!({"apiGroups": ["batch"], "resources": ["cronjobs"], "resourceNames": writable, "verbs": ["patch"]}),
        );
    }
    kubectl_apply(json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "berth-operator"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "berth-operator"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "berth-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "berth-operator"},
         "subjects": [{"kind": "ServiceAccount", "name": "berth-operator", "namespace": ns.name}]}
    ]}));
    berth_testenv::service_account_kubeconfig(&ns.name, "berth-operator")
}
