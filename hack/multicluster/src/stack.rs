//! One set-up across clusters for a test or a soak: the coordination plane
//! with the Berth apiserver and a coordination-mode operator, and member
//! planes, each with a proxy to the apiserver, a member-mode operator, the
//! same BerthLease and its target, and a watch on that target.
//!
//! Every test gets fresh namespaces (the same name on every plane), a fresh
//! apiserver and fresh operators; the control planes are reused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_api::BerthLease;
use berth_api::crd::LEASE_LABEL;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::clusters::Cluster;
use berth_testenv::operator::{self, Operator};
use berth_testenv::proxy::{Mode, Proxy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::watch::Recorder;

/// The name of the lease and of its target on every member.
pub const LEASE: &str = "ingest-coordinator";
/// The leader election Lease of the member operators, with [`Config::leader_election`].
pub const LEADER_LEASE: &str = "berth-operator";

/// What the lease gates in each member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Resumed (`suspend: false`) while held.
    CronJob,
    /// Scaled to one replica while held, to zero otherwise.
    Deployment,
    /// No target: a Deployment of [`Config::replicas`] in every member, never
    /// scaled by Berth, whose pods carry the lease label. The chart's pod
    /// gate holds them at the scheduling gate unless their cluster holds the
    /// lease ([`crate::pod_gate`]).
    GatedPods,
}

impl Target {
    /// Whether the lease has a target whose stop it records (`stoppedAt`).
    pub fn records_stop(self) -> bool {
        self != Self::GatedPods
    }
}

/// The set-up's knobs.
#[derive(Clone, Debug)]
pub struct Config {
    pub members: Vec<String>,
    pub target: Target,
    pub ttl_seconds: u64,
    pub heartbeat_seconds: u64,
    /// Where the named control planes live (one subdirectory each).
    pub clusters_dir: PathBuf,
    /// Member operators run with `--leader-elect` (the Lease [`LEADER_LEASE`]
    /// in the test namespace, 3 s duration, 2 s renew deadline, 1 s retry),
    /// so that [`Member::start_replica`] adds a standby.
    pub leader_election: bool,
    /// Real processes: with `Some(dir)`, every member's plane gets a node
    /// and the target runs the workload of [`crate::processes`], which
    /// records its life to `<dir>/history` (a hostPath every node shares).
    /// With `None` the target's pods never run: its flags are the history.
    pub processes: Option<PathBuf>,
    /// The lease's `stopSeconds`.
    pub stop_seconds: u64,
    /// The Deployment's replicas while held.
    pub replicas: u32,
    /// With [`Self::processes`]: the pods' `terminationGracePeriodSeconds`,
    /// and how long each process goes on after SIGTERM before it exits.
    pub grace_seconds: u64,
    pub drain_seconds: u64,
    /// With `Some(set)`, the members' tenants form this cluster set and no
    /// global lease is made by hand: the first member's acquire creates it,
    /// shared by the set. With `None` it is applied in the coordination
    /// cluster beforehand, without a tenant label.
    pub cluster_set: Option<String>,
}

impl Config {
    /// `east` and `west`, a CronJob, TTL 4 s and a heartbeat of 1 s, on the tests' planes.
    pub fn new() -> Self {
        Self {
            members: vec!["east".into(), "west".into()],
            target: Target::CronJob,
            ttl_seconds: 4,
            heartbeat_seconds: 1,
            clusters_dir: berth_testenv::clusters::clusters_dir(),
            leader_election: false,
            processes: None,
            stop_seconds: 0,
            replicas: 1,
            grace_seconds: 5,
            drain_seconds: 0,
            cluster_set: None,
        }
    }

    /// Real processes on nodes, as the process-level tests and the soak on
    /// nodes run them: members `proc-east` and `proc-west`, TTL 20 s with a
    /// heartbeat of 5 s, and a stop budget of 10 s (of at most 12) for a
    /// workload of 2 replicas that takes 4 s to finish after SIGTERM, with a
    /// grace period of 30 s: longer than the budget, so the operator must
    /// shorten it. The history is `<dir>/history`.
    pub fn on_nodes(target: Target, dir: PathBuf) -> Self {
        Self {
            members: vec!["proc-east".into(), "proc-west".into()],
            target,
            ttl_seconds: 20,
            heartbeat_seconds: 5,
            processes: Some(dir),
            stop_seconds: 10,
            replicas: 2,
            grace_seconds: 30,
            drain_seconds: 4,
            ..Self::new()
        }
    }

    /// Stops the planes this configuration names (the coordination plane and
    /// every member), as `hack/control-plane down` does. Best effort.
    pub fn stop_planes(&self) {
        for name in std::iter::once("coordination").chain(self.members.iter().map(String::as_str)) {
            let _ = std::process::Command::new(berth_testenv::repo_root().join("hack/control-plane"))
                .arg("down")
                .env("BERTH_CONTROL_PLANE_DIR", self.clusters_dir.join(name))
                .status();
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// A member cluster: its plane, its proxy to the apiserver, its operator and
/// the watch on its target.
pub struct Member {
    pub id: String,
    pub cluster: Cluster,
    pub client: Client,
    pub proxy: Proxy,
    pub operator: Option<Operator>,
    operator_args: Vec<String>,
    /// `true` while the member's target runs.
    pub target: Recorder<bool>,
    /// With [`Target::GatedPods`]: the pod gate of this member's namespace.
    _pod_gate: Option<crate::pod_gate::PodGatePolicy>,
}

impl Member {
    /// SIGKILLs the member's operator.
    pub fn kill_operator(&mut self) {
        if let Some(mut operator) = self.operator.take() {
            operator.kill();
        }
    }

    /// Starts the member's operator again with the same flags (a fresh process).
    pub fn start_operator(&mut self, namespace: &str) {
        assert!(self.operator.is_none(), "the operator of {} runs already", self.id);
        let args: Vec<&str> = self.operator_args.iter().map(String::as_str).collect();
        self.operator = Some(Operator::start(&operator::binary(), &self.cluster.kubeconfig, &[namespace], &args));
    }

    /// Starts one more operator with the member's flags, beside the one in
    /// [`Self::operator`]; the caller owns (and so stops) it.
    pub fn start_replica(&self, namespace: &str) -> Operator {
        let args: Vec<&str> = self.operator_args.iter().map(String::as_str).collect();
        Operator::start(&operator::binary(), &self.cluster.kubeconfig, &[namespace], &args)
    }

    /// The PID of the operator that holds the leader election Lease (its
    /// identity is `<host>_<pid>`), if one does.
    pub async fn leader_pid(&self, namespace: &str) -> Option<u32> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let identity = leases.get_opt(LEADER_LEASE).await.ok()??.spec?.holder_identity?;
        identity.rsplit('_').next()?.parse().ok()
    }

    /// Cuts the member off (or heals it with [`Mode::Pass`]).
    pub fn set_link(&self, mode: Mode) {
        self.proxy.set_mode(mode);
    }

    /// The member lease's `.status.state` (`held`, `standby`, ...), if it has one.
    pub async fn lease_state(&self, namespace: &str) -> Option<String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &ApiResource::erase::<BerthLease>(&()));
        let lease = api.get_opt(LEASE).await.ok()??;
        lease.data.pointer("/status/state").and_then(Value::as_str).map(str::to_owned)
    }

    /// The member lease's `.status.target.stoppedAt`: when its operator saw
    /// that no pod of the released target runs any more.
    pub async fn target_stopped_at(&self, namespace: &str) -> Option<String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &ApiResource::erase::<BerthLease>(&()));
        let lease = api.get_opt(LEASE).await.ok()??;
        lease.data.pointer("/status/target/stoppedAt").and_then(Value::as_str).map(str::to_owned)
    }

    /// The member operator's log, for failure messages.
    pub fn operator_log(&self) -> String {
        self.operator.as_ref().map(Operator::logs).unwrap_or_default()
    }
}

/// The holder of the global lease as the coordination cluster's store shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalHolder {
    pub identity: String,
    pub fencing_token: i32,
    pub renewed_at: String,
}

/// Everything one test or soak runs.
pub struct Stack {
    pub config: Config,
    /// The namespace, the same on every plane.
    pub namespace: String,
    pub coordination: Cluster,
    pub apiserver: ApiServer,
    pub coordination_operator: Operator,
    pub members: Vec<Member>,
    /// The global lease's holders, as a watch on the coordination plane saw them.
    pub global: Recorder<Vec<GlobalHolder>>,
    /// When the stack was up (every member's target watched).
    pub started: Instant,
}

impl Stack {
    /// Starts everything, applies the lease and its target to every member,
    /// and returns once every member's target is watched.
    ///
    /// # Panics
    /// When any part does not start; the message says which.
    pub async fn start(config: Config, prefix: &str) -> Self {
        let coordination = Cluster::up_in(&config.clusters_dir, "coordination").expect("coordination plane starts");
        let coordination_ns = coordination.namespace(prefix).await.expect("coordination namespace");
        let namespace = coordination_ns.name.clone();
        let mut tenants: Vec<Tenant> = config.members.iter().map(|id| Tenant::new(id, &[])).collect();
        match &config.cluster_set {
            Some(set) => tenants = tenants.into_iter().map(|t| t.in_cluster_set(set)).collect(),
            // The global lease: no target, no tenant label, so every member's tenant sees it.
            None => apply_global_lease(&coordination_ns.client, &namespace, &config).await,
        }
        let apiserver = ApiServer::start_as(&coordination.kubeconfig, tenants, &[&namespace], &[]);
        let coordination_operator = Operator::start(&operator::binary(), &coordination.kubeconfig, &[&namespace], &[]);
        let upstream = apiserver.url.trim_start_matches("https://").parse().expect("apiserver address");

        let mut members = Vec::new();
        for id in &config.members {
            let cluster = match config.processes {
                Some(_) => Cluster::up_with_node_in(&config.clusters_dir, id),
                None => Cluster::up_in(&config.clusters_dir, id),
            }
            .unwrap_or_else(|e| panic!("plane {id}: {e}"));
            let ns = cluster.namespace_named(&namespace).await.unwrap_or_else(|e| panic!("namespace on {id}: {e}"));
            let client = ns.client.clone();
            let key_file = apiserver.dir.join(format!("{id}.key"));
            std::fs::write(&key_file, apiserver.key(id)).expect("key file writes");
            let proxy = Proxy::start(upstream).expect("proxy starts");
            let mut operator_args = member_args(&proxy, &key_file, &apiserver.ca_file, id);
            if config.leader_election {
                operator_args.extend(leader_args(&namespace));
            }
            // Before the workload: its first pods are gated too.
            let pod_gate = match config.target {
                Target::GatedPods => Some(crate::pod_gate::PodGatePolicy::install(&cluster, &client, &namespace).await),
                _ => None,
            };
            apply_target(&client, &namespace, &config, id).await;
            apply_lease(&client, &namespace, &config).await;
            let target = watch_target(&client, &namespace, config.target);
            let mut member = Member {
                id: id.clone(),
                cluster,
                client,
                proxy,
                operator: None,
                operator_args,
                target,
                _pod_gate: pod_gate,
            };
            member.start_operator(&namespace);
            members.push(member);
        }
        let global = Recorder::start(
            Api::<BerthLease>::namespaced(coordination_ns.client.clone(), &namespace),
            LEASE,
            global_holders,
        );
        Self {
            config,
            namespace,
            coordination,
            apiserver,
            coordination_operator,
            members,
            global,
            started: Instant::now(),
        }
    }

    pub fn member(&self, id: &str) -> &Member {
        self.members.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("no member {id}"))
    }

    pub fn member_mut(&mut self, id: &str) -> &mut Member {
        self.members.iter_mut().find(|m| m.id == id).unwrap_or_else(|| panic!("no member {id}"))
    }

    /// Every member's history of its target, for [`crate::overlap::overlaps`].
    pub fn histories(&self) -> Vec<(String, Vec<crate::overlap::Observation>)> {
        self.members.iter().map(|m| (m.id.clone(), m.target.observations())).collect()
    }

    /// Every overlap so far (open intervals run until now).
    pub fn overlaps(&self) -> Vec<crate::overlap::Overlap> {
        let histories = self.histories();
        let borrowed: Vec<(&str, &[crate::overlap::Observation])> =
            histories.iter().map(|(id, h)| (id.as_str(), h.as_slice())).collect();
        crate::overlap::overlaps(&borrowed, Instant::now())
    }

    /// Waits until one member runs its target (after `after`) and returns its id and when.
    pub async fn wait_for_runner(&self, after: Instant, within: Duration) -> (String, Instant) {
        berth_testenv::eventually_showing(
            "a member runs its target",
            within,
            || self.logs(),
            || async {
                self.members.iter().find_map(|member| {
                    let history = member.target.observations();
                    crate::overlap::first_at_or_after(&history, after, true).map(|at| (member.id.clone(), at))
                })
            },
        )
        .await
    }

    /// Waits until the global lease has been renewed `renewals` more times
    /// (distinct `renewedAt` of a holder), that is, until that many
    /// heartbeats passed; returns the holder then.
    pub async fn wait_heartbeats(&self, renewals: usize, within: Duration) -> GlobalHolder {
        let seen = self.global.history().len();
        self.global
            .wait_for("heartbeats of the global lease", within, |history| {
                let later: Vec<&GlobalHolder> =
                    history.iter().skip(seen).filter_map(|(_, holders)| holders.first()).collect();
                (later.len() >= renewals).then(|| later.last().copied().cloned()).flatten()
            })
            .await
    }

    /// Deletes the target in every member (its pods go with it), so that no
    /// workload runs on after a test on nodes. Best effort.
    pub async fn delete_workloads(&self) {
        let resource = resource_of(self.config.target);
        for member in &self.members {
            let api: Api<DynamicObject> = Api::namespaced_with(member.client.clone(), &self.namespace, &resource);
            let _ = api.delete(LEASE, &kube::api::DeleteParams::background()).await;
        }
    }

    /// SIGSTOPs (`true`) or SIGCONTs the Berth apiserver.
    pub fn pause_apiserver(&self, paused: bool) {
        let pid = self.apiserver.pid().expect("the apiserver runs");
        let signal = if paused { Signal::SIGSTOP } else { Signal::SIGCONT };
        kill(Pid::from_raw(i32::try_from(pid).expect("a pid")), signal).expect("signal sends");
    }

    /// The last lines of every log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |text: String| {
            text.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        let mut out = format!("--- apiserver\n{}\n", tail(self.apiserver.log()));
        for member in &self.members {
            out.push_str(&format!("--- operator of {}\n{}\n", member.id, tail(member.operator_log())));
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A SIGSTOPped apiserver would not die from SIGKILL before SIGCONT on every kernel.
        if let Some(pid) = self.apiserver.pid() {
            let _ = kill(Pid::from_raw(i32::try_from(pid).unwrap_or(0)), Signal::SIGCONT);
        }
    }
}

/// The member-mode flags of the operator (docs/multicluster.md, "Flags").
fn member_args(proxy: &Proxy, key_file: &Path, ca_file: &Path, id: &str) -> Vec<String> {
    vec![
        "--berth-api-server".into(),
        format!("https://{}", proxy.addr()),
        "--berth-api-key-file".into(),
        key_file.display().to_string(),
        "--berth-ca-file".into(),
        ca_file.display().to_string(),
        "--cluster-id".into(),
        id.into(),
    ]
}

/// Leader election with short timings, its Lease in the test namespace.
fn leader_args(namespace: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-elect-namespace",
        namespace,
        "--leader-elect-id",
        LEADER_LEASE,
        "--leader-elect-lease-duration",
        "3",
        "--leader-elect-renew-deadline",
        "2",
        "--leader-elect-retry-period",
        "1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The holders of the coordination lease, as its status lists them.
fn global_holders(lease: Option<&BerthLease>) -> Vec<GlobalHolder> {
    let Some(status) = lease.and_then(|l| l.status.as_ref()) else { return Vec::new() };
    status
        .holders
        .iter()
        .map(|h| GlobalHolder {
            identity: h.identity.clone(),
            fencing_token: h.fencing_token,
            renewed_at: h.renewed_at.to_rfc3339(),
        })
        .collect()
}

/// The same manifest on every member: the lease, gating the target.
pub fn lease_manifest(namespace: &str, config: &Config) -> Value {
    let (target, acquire, release) = match config.target {
        Target::CronJob => (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": LEASE}),
            json!({"suspend": false}),
            json!({"suspend": true}),
        ),
        Target::Deployment => (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": LEASE}),
            json!({"replicas": config.replicas}),
            json!({"replicas": 0}),
        ),
        Target::GatedPods => (Value::Null, Value::Null, Value::Null),
    };
    let mut lease = json!({
        "apiVersion": "berth.skaphos.io/v1alpha1",
        "kind": "BerthLease",
        "metadata": {"name": LEASE, "namespace": namespace},
        "spec": {
            "leaseName": LEASE,
            "ttlSeconds": config.ttl_seconds,
            "heartbeatIntervalSeconds": config.heartbeat_seconds,
            "semantics": "at-most-once",
            "stopSeconds": config.stop_seconds,
            "target": target,
            "acquireAction": acquire,
            "releaseAction": release,
        }
    });
    if let Some(spec) = lease["spec"].as_object_mut() {
        spec.retain(|_, value| !value.is_null());
    }
    lease
}

fn target_manifest(namespace: &str, config: &Config, member: &str) -> Value {
    let pod = match &config.processes {
        None => json!({
            "metadata": {"labels": {"app": LEASE}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "ingest", "image": "busybox:1.37", "command": ["true"]}]}
        }),
        Some(dir) => json!({
            "metadata": {"labels": {"app": LEASE}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": config.grace_seconds,
                "volumes": [{"name": "history", "hostPath": {"path": dir, "type": "DirectoryOrCreate"}}],
                "containers": [{
                    "name": "ingest", "image": "berth.local/busybox:dev", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", crate::processes::WORKLOAD_SCRIPT],
                    "env": [
                        {"name": "CLUSTER", "value": member},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "HISTORY", "value": "/history/history"},
                        {"name": "DRAIN", "value": config.drain_seconds.to_string()},
                    ],
                    "volumeMounts": [{"name": "history", "mountPath": "/history"}],
                }],
            }
        }),
    };
    // With real processes the CronJob fires every minute and its Job runs until stopped.
    let schedule = if config.processes.is_some() { "* * * * *" } else { "*/5 * * * *" };
    match config.target {
        Target::CronJob => json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": LEASE, "namespace": namespace},
            "spec": {
                "schedule": schedule, "suspend": true, "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"template": pod}},
            }
        }),
        Target::Deployment | Target::GatedPods => {
            let mut template = pod;
            template["spec"]["restartPolicy"] = json!("Always");
            let replicas = if config.target == Target::GatedPods {
                template["metadata"]["labels"][LEASE_LABEL] = json!(LEASE);
                config.replicas
            } else {
                0
            };
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": LEASE, "namespace": namespace},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": LEASE}}, "template": template}
            })
        }
    }
}

fn resource_of(target: Target) -> ApiResource {
    match target {
        Target::CronJob => ApiResource::erase::<CronJob>(&()),
        Target::Deployment | Target::GatedPods => ApiResource::erase::<Deployment>(&()),
    }
}

async fn apply(client: &Client, namespace: &str, resource: &ApiResource, manifest: &Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("a manifest");
    api.patch(LEASE, &PatchParams::apply("berth-multicluster").force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {manifest}: {e}"));
}

async fn apply_target(client: &Client, namespace: &str, config: &Config, member: &str) {
    apply(client, namespace, &resource_of(config.target), &target_manifest(namespace, config, member)).await;
}

/// The members' lease without what gates a workload: the coordination
/// cluster's copy has no target of its own.
async fn apply_global_lease(client: &Client, namespace: &str, config: &Config) {
    let mut manifest = lease_manifest(namespace, config);
    if let Some(spec) = manifest["spec"].as_object_mut() {
        for member_only in ["target", "acquireAction", "releaseAction", "stopSeconds"] {
            spec.remove(member_only);
        }
    }
    apply(client, namespace, &ApiResource::erase::<BerthLease>(&()), &manifest).await;
}

async fn apply_lease(client: &Client, namespace: &str, config: &Config) {
    apply(client, namespace, &ApiResource::erase::<BerthLease>(&()), &lease_manifest(namespace, config)).await;
}

/// A watch on the member's target: `true` while it runs.
pub fn watch_target(client: &Client, namespace: &str, target: Target) -> Recorder<bool> {
    match target {
        Target::CronJob => Recorder::start(Api::<CronJob>::namespaced(client.clone(), namespace), LEASE, |c| {
            c.and_then(|c| c.spec.suspend) == Some(false)
        }),
        Target::Deployment => Recorder::start(Api::<Deployment>::namespaced(client.clone(), namespace), LEASE, |d| {
            d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).is_some_and(|r| r > 0)
        }),
        // Its replicas never change: what runs is what is ready.
        Target::GatedPods => Recorder::start(Api::<Deployment>::namespaced(client.clone(), namespace), LEASE, |d| {
            d.and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas).is_some_and(|r| r > 0)
        }),
    }
}
