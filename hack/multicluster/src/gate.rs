//! `berth gate` on real nodes: one lease in the coordination cluster, held
//! by pods directly. The same Deployment runs in two member clusters; each
//! pod has the gate as a native sidecar, signed in with its projected
//! service-account token (audience `berth`, tenant `app` for both members'
//! issuers), and an app container that records its life
//! ([`crate::processes`]) under its own name, so that any two pods' app
//! processes at once are an overlap, whichever clusters they are in.
//!
//! Each member's pods reach the Berth apiserver through a proxy of their own
//! ([`Proxy`]), listening on the host's end of that member's node link, so
//! that one member can be cut off.

use std::path::PathBuf;
use std::time::Duration;

use berth_api::BerthLease;
use berth_testenv::apiserver::ApiServer;
use berth_testenv::clusters::Cluster;
use berth_testenv::identity::ControlPlane;
use berth_testenv::operator::{self, Operator};
use berth_testenv::proxy::{Mode, Proxy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::processes::{Life, WORKLOAD_SCRIPT, read_lives};

/// The lease the gates hold, and the Deployment's name.
pub const LEASE: &str = "gated-app";
/// The tenant every gate's token maps to.
pub const TENANT: &str = "app";

/// The timing of the gates: TTL 10 s (a heartbeat of 3.3 s, a margin of 1 s),
/// a stop budget of 3 s (of at most 5), and an app that takes 1 s to finish
/// after SIGTERM.
pub const TTL_SECONDS: u64 = 10;
pub const STOP_BUDGET_SECONDS: u64 = 3;
pub const DRAIN_SECONDS: u64 = 1;

/// One member: its plane, its namespace's client and its proxy.
pub struct GateMember {
    pub id: String,
    pub cluster: Cluster,
    pub client: Client,
    pub proxy: Proxy,
}

/// The set-up; dropping it stops the processes it started.
pub struct GateStack {
    pub namespace: String,
    pub members: Vec<GateMember>,
    pub history: PathBuf,
    /// Kept for its process: the Berth apiserver stops when it is dropped.
    _apiserver: ApiServer,
    _coordination_operator: Operator,
}

impl GateStack {
    /// Starts the coordination plane with the Berth apiserver and an
    /// operator, the lease, and in `members` (planes with a node) the
    /// Deployment of `replicas` gated pods.
    pub async fn start(clusters_dir: &std::path::Path, members: &[&str], replicas: u32, prefix: &str) -> Self {
        let coordination = Cluster::up_in(clusters_dir, "coordination").expect("coordination plane starts");
        let coordination_ns = coordination.namespace(prefix).await.expect("coordination namespace");
        let namespace = coordination_ns.name.clone();
        let lease = json!({
            "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
            "metadata": {"name": LEASE, "namespace": namespace},
            "spec": {
                "leaseName": LEASE, "ttlSeconds": TTL_SECONDS, "heartbeatIntervalSeconds": TTL_SECONDS / 3,
                "semantics": "at-most-once",
            },
        });
        apply(&coordination_ns.client, &namespace, &ApiResource::erase::<BerthLease>(&()), &lease).await;

        let mut planes = Vec::new();
        for id in members {
            let cluster = Cluster::up_with_node_in(clusters_dir, id).unwrap_or_else(|e| panic!("plane {id}: {e}"));
            cluster.import_images(&[berth_testenv::image_archive("berth")]).expect("the berth image imports");
            planes.push(cluster);
        }
        // Every member's service-account issuer, mapped to one tenant: the
        // app's, wherever its pods run.
        let issuers: Vec<Value> = planes
            .iter()
            .map(|cluster| {
                let plane = ControlPlane { dir: cluster.dir.clone() };
                json!({
                    "issuer": {"url": plane.issuer(), "audiences": ["berth"], "certificateAuthority": plane.ca_pem()},
                    "tenants": [{"serviceAccount": format!("{namespace}:{LEASE}"), "tenant": TENANT}],
                })
            })
            .collect();
        let scratch = std::env::temp_dir().join(format!("berth-gate-{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let config = scratch.join("authentication.yaml");
        let authentication = json!({
            "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "AuthenticationConfiguration", "jwt": issuers,
        });
        std::fs::write(&config, authentication.to_string()).expect("authentication config writes");
        let hosts: Vec<String> = planes.iter().map(|c| berth_testenv::apiserver_host(&c.dir)).collect();
        let sans = hosts.iter().map(|h| format!("IP:{h}")).collect::<Vec<_>>().join(",");
        let apiserver = ApiServer::start_with_sans(
            &coordination.kubeconfig,
            Vec::new(),
            &[&namespace],
            &[&format!("--authentication-config={}", config.display())],
            &sans,
        );
        let coordination_operator = Operator::start(&operator::binary(), &coordination.kubeconfig, &[&namespace], &[]);
        let upstream = apiserver.url.trim_start_matches("https://").parse().expect("apiserver address");

        let history = scratch.join("history");
        let mut gate_members = Vec::new();
        for (cluster, host) in planes.into_iter().zip(hosts) {
            let id = cluster.name.clone();
            let listen = format!("{host}:0").parse().expect("an address");
            let proxy = Proxy::start_on(listen, upstream).expect("proxy starts");
            let ns = cluster.namespace_named(&namespace).await.unwrap_or_else(|e| panic!("namespace on {id}: {e}"));
            let client = ns.client.clone();
            let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": LEASE}});
            apply(
                &client,
                &namespace,
                &ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()),
                &account,
            )
            .await;
            let manifest = deployment(&id, replicas, &proxy, &apiserver.ca_file, &scratch);
            apply(&client, &namespace, &ApiResource::erase::<Deployment>(&()), &manifest).await;
            gate_members.push(GateMember { id, cluster, client, proxy });
        }
        Self {
            namespace,
            members: gate_members,
            history,
            _apiserver: apiserver,
            _coordination_operator: coordination_operator,
        }
    }

    pub fn member(&self, id: &str) -> &GateMember {
        self.members.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("no member {id}"))
    }

    pub fn lives(&self) -> Vec<Life> {
        read_lives(&self.history)
    }

    /// Deletes pod `name` of member `id` with its grace period, as
    /// `kubectl delete pod` does.
    pub async fn delete_pod(&self, id: &str, name: &str) {
        let pods: Api<Pod> = Api::namespaced(self.member(id).client.clone(), &self.namespace);
        pods.delete(name, &DeleteParams::default()).await.expect("pod deletes");
    }

    /// Cuts member `id` off the Berth apiserver (`Mode::Blackhole`), or lets it through.
    pub fn set_link(&self, id: &str, mode: Mode) {
        self.member(id).proxy.set_mode(mode);
    }

    /// Starts a rolling update of member `id`'s Deployment: a new template.
    pub async fn roll(&self, id: &str, revision: u32) {
        let deployments: Api<Deployment> = Api::namespaced(self.member(id).client.clone(), &self.namespace);
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"revision": revision.to_string()}}}}});
        deployments.patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("deployment patches");
    }

    /// Deletes the Deployments, so that nothing runs on after the test.
    pub async fn delete_workloads(&self) {
        for member in &self.members {
            let api: Api<Deployment> = Api::namespaced(member.client.clone(), &self.namespace);
            let _ = api.delete(LEASE, &DeleteParams::background()).await;
        }
    }
}

/// Member `id`'s Deployment: the gate as a native sidecar, the app with
/// `restartPolicy: Never`, one process namespace. `hostNetwork`, because the
/// proxy is on the node's link. Rolling updates may take every pod down at
/// once: a gated pod is ready only while it holds, so at most one pod of the
/// Deployment is ever available.
fn deployment(id: &str, replicas: u32, proxy: &Proxy, ca_file: &std::path::Path, scratch: &std::path::Path) -> Value {
    let ca_dir = ca_file.parent().expect("the CA's directory");
    let probe = json!({"exec": {"command": ["/usr/local/bin/berth", "gate", "probe"]}, "periodSeconds": 1, "failureThreshold": 1});
    let startup = json!({"exec": {"command": ["/usr/local/bin/berth", "gate", "probe"]}, "periodSeconds": 1, "failureThreshold": 1_000_000});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": LEASE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": LEASE}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": {"app": LEASE}},
                "spec": {
                    "serviceAccountName": LEASE,
                    "automountServiceAccountToken": false,
                    "hostNetwork": true,
                    "shareProcessNamespace": true,
                    "terminationGracePeriodSeconds": 10,
                    "volumes": [
                        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"audience": "berth", "expirationSeconds": 3600, "path": "token"}}]}},
                        {"name": "ca", "hostPath": {"path": ca_dir, "type": "Directory"}},
                        {"name": "gate", "emptyDir": {}},
                        {"name": "history", "hostPath": {"path": scratch, "type": "DirectoryOrCreate"}},
                    ],
                    "initContainers": [{
                        "name": "gate", "image": "berth.local/berth:dev", "imagePullPolicy": "Never",
                        "restartPolicy": "Always",
                        // Root, to signal the app's processes (which run as root too).
                        "securityContext": {"runAsUser": 0},
                        "args": ["gate", LEASE, "--ttl", format!("{TTL_SECONDS}s"), "--stop-budget", format!("{STOP_BUDGET_SECONDS}s")],
                        "env": [
                            {"name": "BERTH_API_SERVER", "value": format!("https://{}", proxy.addr())},
                            {"name": "BERTH_CA_FILE", "value": "/etc/berth-ca/ca.crt"},
                            {"name": "BERTH_API_KEY_FILE", "value": "/var/run/secrets/berth/token"},
                            {"name": "BERTH_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "BERTH_TENANT", "value": TENANT},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        ],
                        "startupProbe": startup,
                        "readinessProbe": probe,
                        "volumeMounts": [
                            {"name": "token", "mountPath": "/var/run/secrets/berth", "readOnly": true},
                            {"name": "ca", "mountPath": "/etc/berth-ca", "readOnly": true},
                            {"name": "gate", "mountPath": "/var/run/berth-gate"},
                        ],
                    }],
                    "containers": [{
                        "name": "app", "image": "berth.local/busybox:dev", "imagePullPolicy": "Never",
                        "restartPolicy": "Never",
                        "command": ["sh", "-c", WORKLOAD_SCRIPT],
                        "env": [
                            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            // Every pod is its own "cluster" in the history: any two at once overlap.
                            {"name": "CLUSTER", "value": format!("{id}/$(POD)")},
                            {"name": "HISTORY", "value": "/history/history"},
                            {"name": "DRAIN", "value": DRAIN_SECONDS.to_string()},
                        ],
                        "volumeMounts": [{"name": "history", "mountPath": "/history"}],
                    }],
                },
            },
        },
    })
}

async fn apply(client: &Client, namespace: &str, resource: &ApiResource, manifest: &Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("a manifest");
    let name = object.metadata.name.clone().expect("a name");
    api.patch(&name, &PatchParams::apply("berth-multicluster").force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {manifest}: {e}"));
}

/// How long a step of the gate's scenarios may take before the test gives up.
pub const STEP: Duration = Duration::from_secs(180);
