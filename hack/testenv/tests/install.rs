//! The README's install, for real, on a node (`hack/control-plane up --node`):
//! the CRD, then both Helm charts with real values (a TLS Secret, an API keys
//! Secret, two replicas each) running the images `make images` built. Every
//! pod becomes Ready through its own probes, the CLI acquires through the
//! apiserver's Service, a CronJob target runs Jobs only while its lease is
//! held, a Deployment target's pods come and go with the lease, and killing
//! the operator's leader pod hands leadership to the other replica.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_api::BerthLease;
use berth_testenv::clusters::Cluster;
use berth_testenv::identity::ControlPlane;
use berth_testenv::{built_binary, eventually, helm, repo_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};

/// The cluster with a node that the node tests share.
const CLUSTER: &str = "nodes";
const SYSTEM: &str = "berth-system";

/// A member cluster with a node of its own, whose operator signs in to the
/// coordination apiserver with its pod's projected token.
const MEMBER: &str = "nodes-east";

/// Berth as the charts installed it.
struct Berth {
    cluster: Cluster,
    /// The member cluster `east`, whose issuer the apiserver trusts.
    east: Cluster,
    /// `https://<ClusterIP>:8443`: the apiserver's Service, which the host
    /// reaches through the node (kube-proxy's rules in its namespace).
    url: String,
    /// The CA that signed the apiserver's certificate.
    ca: PathBuf,
    /// The API key of tenant `demo`.
    key: String,
}

/// Runs `cmd` and returns its stdout.
///
/// # Panics
/// When it fails, with its output.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn sh(script: &str) -> String {
    run(Command::new("sh").args(["-c", script]), script).trim().to_owned()
}

/// The archives of `make images`.
fn image_archives() -> Vec<PathBuf> {
    ["apiserver", "operator", "berth"].into_iter().map(berth_testenv::image_archive).collect()
}

fn berth() -> &'static Berth {
    static BERTH: OnceLock<Berth> = OnceLock::new();
    BERTH.get_or_init(install)
}

fn install() -> Berth {
    let cluster = Cluster::up_with_node(CLUSTER).unwrap();
    let east = Cluster::up_with_node(MEMBER).unwrap();
    let archives = image_archives();
    cluster.import_images(&archives).unwrap();
    east.import_images(&archives).unwrap();
    let kubectl = || cluster.kubectl().unwrap();
    let crd = repo_root().join("config/crd/berthlease.yaml");
    run(kubectl().args(["apply", "--server-side", "-f"]).arg(&crd), "applying the CRD");
    run(
        kubectl().args([
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "crd/berthleases.berth.skaphos.io",
        ]),
        "waiting for the CRD",
    );
    sh(&format!("{k} create namespace {SYSTEM} --dry-run=client -o yaml | {k} apply -f -", k = kubectl_line(&cluster)));

    // A fixed ClusterIP in the node's Service range, so the certificate can name it.
    let cidr = std::fs::read_to_string(cluster.dir.join("node/service-cidr")).unwrap();
    let ip = format!("{}.200", cidr.trim().rsplit_once('.').unwrap().0);
    // Made once per node: a later run reuses the running install and its
    // secrets; `down` removes them with the node (a new node may have other addresses).
    let tls = cluster.dir.join("node/berth-install");
    if !tls.join("api-key").exists() {
        run(
            Command::new(repo_root().join("hack/gen-tls.sh"))
                .arg(&tls)
                .args(["berth-apiserver", &format!("IP:{ip},DNS:berth-apiserver.{SYSTEM}.svc")]),
            "hack/gen-tls.sh",
        );
        let key = sh("openssl rand -hex 24");
        let hash = sh(&format!("printf %s {key} | sha256sum | cut -d' ' -f1"));
        std::fs::write(tls.join("api-keys"), format!("demo:{hash}\n")).unwrap();
        std::fs::write(tls.join("api-key"), &key).unwrap();
    }
    let key = std::fs::read_to_string(tls.join("api-key")).unwrap();
    let k = kubectl_line(&cluster);
    let dir = tls.display();
    sh(&format!(
        "{k} -n {SYSTEM} create secret tls berth-apiserver-tls --cert {dir}/tls.crt --key {dir}/tls.key \
         --dry-run=client -o yaml | {k} apply -f -"
    ));
    sh(&format!(
        "{k} -n {SYSTEM} create secret generic berth-api-keys --from-file=api-keys={dir}/api-keys \
         --dry-run=client -o yaml | {k} apply -f -"
    ));

    // A digest of the images and the certificate as a pod annotation: a rebuilt
    // image or a new certificate rolls the pods.
    let inputs: Vec<String> = archives.iter().chain([&tls.join("tls.crt")]).map(|a| a.display().to_string()).collect();
    let digest = sh(&format!("cat {} | sha256sum | cut -c1-16", inputs.join(" ")));
    // Member east's operator signs in with its service-account token: the
    // apiserver trusts east's issuer (reached across the nodes, checked
    // against east's CA) and maps east's operator to tenant `east`.
    let issuer = ControlPlane { dir: east.dir.clone() };
    let authentication = serde_json::json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": issuer.issuer(), "audiences": ["berth"], "certificateAuthority": issuer.ca_pem()},
            "tenants": [{"serviceAccount": format!("{SYSTEM}:berth-operator"), "tenant": "east"}],
        }],
    });
    for (release, image, extra) in [
        (
            "berth-apiserver",
            "berth.local/apiserver",
            vec![format!("--set=service.clusterIP={ip}"), format!("--set-json=authentication.config={authentication}")],
        ),
        ("berth-operator", "berth.local/operator", vec![]),
    ] {
        run(
            Command::new(helm())
                .env("KUBECONFIG", &cluster.kubeconfig)
                .args(["upgrade", "--install", release])
                .arg(repo_root().join("deploy/helm").join(release))
                .args(["--namespace", SYSTEM, "--wait", "--timeout", "5m"])
                .args([
                    format!("--set=image.repository={image}"),
                    "--set=image.tag=dev".to_owned(),
                    "--set=image.pullPolicy=Never".to_owned(),
                    "--set=replicaCount=2".to_owned(),
                    format!("--set-string=podAnnotations.berth\\.skaphos\\.io/images={digest}"),
                ])
                .args(extra),
            &format!("helm upgrade --install {release}"),
        );
    }
    Berth { url: format!("https://{ip}:8443"), ca: tls.join("ca.crt"), key, cluster, east }
}

fn kubectl_line(cluster: &Cluster) -> String {
    let bin = std::fs::read_to_string(cluster.dir.join("bin-dir")).unwrap();
    format!("KUBECONFIG={} {}/kubectl", cluster.kubeconfig.display(), bin.trim())
}

/// The `berth` CLI against the installed apiserver, in namespace `namespace`.
fn cli(berth: &Berth, namespace: &str) -> Command {
    let mut cmd = Command::new(built_binary("berth", "BERTH_CLI_BIN", "berth-cli"));
    cmd.env("BERTH_API_SERVER", &berth.url)
        .env("BERTH_CA_FILE", &berth.ca)
        .env("BERTH_API_KEY", &berth.key)
        .env("BERTH_NAMESPACE", namespace);
    cmd
}

fn lease(name: &str, target: serde_json::Value, acquire: serde_json::Value, release: serde_json::Value) -> BerthLease {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
        "metadata": {"name": name},
        "spec": {
            "leaseName": name, "ttlSeconds": 120, "heartbeatIntervalSeconds": 30, "semantics": "at-most-once",
            "target": target, "acquireAction": acquire, "releaseAction": release,
        },
    }))
    .expect("lease is valid")
}

fn busybox(command: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "main", "image": "berth.local/busybox:dev", "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
    })
}

/// A Deployment `name` of busybox pods that sleep, scaled to 0: a lease's target.
fn sleepers(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [busybox("exec sleep 3600")]},
            },
        },
    }))
    .expect("deployment is valid")
}

#[tokio::test]
async fn every_pod_becomes_ready_through_its_own_probes() {
    let berth = berth();
    let client = berth.cluster.client().await.unwrap();
    for release in ["berth-apiserver", "berth-operator"] {
        let deployment = Api::<Deployment>::namespaced(client.clone(), SYSTEM).get(release).await.unwrap();
        let status = deployment.status.unwrap();
        assert_eq!(status.ready_replicas, Some(2), "{release}: {status:?}");
        let selector = format!("app.kubernetes.io/name={release}");
        let pods = Api::<Pod>::namespaced(client.clone(), SYSTEM).list(&ListParams::default().labels(&selector)).await;
        for pod in pods.unwrap().items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let spec = pod.spec.as_ref().unwrap();
            let container = &spec.containers[0];
            assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some(), "{release}: no probes");
            assert!(
                container.image.as_deref().unwrap().starts_with("berth.local/"),
                "{release}: {:?}",
                container.image
            );
        }
    }
}

#[tokio::test]
async fn the_cli_acquires_through_the_apiservers_service() {
    let berth = berth();
    let ns = berth.cluster.namespace("install-cli").await.unwrap();
    let acquired = run(
        cli(berth, &ns.name).args(["lease", "acquire", "door", "--holder", "demo/cli", "--ttl", "60s", "-o", "json"]),
        "berth lease acquire",
    );
    let answer: serde_json::Value = serde_json::from_str(&acquired).unwrap();
    assert_eq!((&answer["acquired"], &answer["holder"]), (&true.into(), &"demo/cli".into()), "{answer}");
    let stored = ns.api::<BerthLease>().get("door").await.unwrap();
    assert_eq!(stored.status.unwrap().holders[0].identity, "demo/cli");

    // The berth image runs the same CLI inside the cluster.
    let k = kubectl_line(&berth.cluster);
    sh(&format!(
        "{k} -n {ns} create secret generic berth-client --from-file=ca.crt={ca} --from-literal=api-key={key}",
        ns = ns.name,
        ca = berth.ca.display(),
        key = berth.key
    ));
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cli"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "client", "secret": {"secretName": "berth-client"}}],
            "containers": [{
                "name": "berth", "image": "berth.local/berth:dev", "imagePullPolicy": "Never",
                "args": ["lease", "get", "door", "-o", "json"],
                "env": [
                    {"name": "BERTH_API_SERVER", "value": berth.url},
                    {"name": "BERTH_CA_FILE", "value": "/etc/berth/ca.crt"},
                    {"name": "BERTH_API_KEY", "valueFrom": {"secretKeyRef": {"name": "berth-client", "key": "api-key"}}},
                    {"name": "BERTH_NAMESPACE", "value": ns.name},
                ],
                "volumeMounts": [{"name": "client", "mountPath": "/etc/berth", "readOnly": true}],
            }],
        },
    }))
    .unwrap();
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the CLI pod succeeds", Duration::from_secs(120), || async {
        let phase = pods.get("cli").await.ok()?.status?.phase?;
        assert_ne!(phase, "Failed", "the CLI pod failed: {}", ns.kubectl_output(&["logs", "cli"]));
        (phase == "Succeeded").then_some(())
    })
    .await;
    let seen: serde_json::Value = serde_json::from_str(&ns.kubectl_output(&["logs", "cli"])).unwrap();
    assert_eq!(seen["holders"][0]["identity"], "demo/cli", "{seen}");
}

/// Jobs of CronJob `owner` in the namespace, by creation time.
async fn jobs_of(jobs: &Api<Job>, owner: &str) -> Vec<Job> {
    let mut owned: Vec<Job> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.metadata.owner_references.iter().flatten().any(|o| o.kind == "CronJob" && o.name == owner))
        .collect();
    owned.sort_by_key(|j| j.metadata.creation_timestamp.clone());
    owned
}

#[tokio::test]
async fn a_cronjob_target_runs_jobs_only_while_its_lease_is_held() {
    let berth = berth();
    let ns = berth.cluster.namespace("install-cron").await.unwrap();
    // Two CronJobs on the same every-minute schedule: `gated` is the lease's
    // target; `metronome` is not gated, so its Jobs show when a tick passed.
    for (name, suspend) in [("gated", true), ("metronome", false)] {
        let cronjob: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "schedule": "* * * * *", "suspend": suspend, "successfulJobsHistoryLimit": 10,
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "containers": [busybox(&format!("echo {name} ran"))],
                }}}},
            },
        }))
        .unwrap();
        ns.api::<CronJob>().create(&PostParams::default(), &cronjob).await.unwrap();
    }
    let target = serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": "gated"});
    let gate = lease("gated", target, serde_json::json!({"suspend": false}), serde_json::json!({"suspend": true}));
    ns.api::<BerthLease>().create(&PostParams::default(), &gate).await.unwrap();

    run(cli(berth, &ns.name).args(["lease", "acquire", "gated", "--holder", "demo/cron", "--ttl", "5m"]), "acquire");
    let jobs = ns.api::<Job>();
    eventually("a Job of the held CronJob succeeds", Duration::from_secs(180), || async {
        jobs_of(&jobs, "gated")
            .await
            .iter()
            .any(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
            .then_some(())
    })
    .await;

    run(cli(berth, &ns.name).args(["lease", "release", "gated"]), "release");
    let cronjobs = ns.api::<CronJob>();
    eventually("the released CronJob is suspended", Duration::from_secs(60), || async {
        let spec = cronjobs.get("gated").await.ok()?.spec;
        (spec.suspend == Some(true)).then_some(())
    })
    .await;
    let before = jobs_of(&jobs, "gated").await.len();
    let metronome = jobs_of(&jobs, "metronome").await.len();
    // The next tick: the metronome starts a Job, the released CronJob does not.
    eventually("the metronome's next Job", Duration::from_secs(180), || async {
        (jobs_of(&jobs, "metronome").await.len() > metronome).then_some(())
    })
    .await;
    let after = jobs_of(&jobs, "gated").await;
    assert_eq!(after.len(), before, "a Job started after the lease was released: {:?}", after.last());
}

#[tokio::test]
async fn a_deployment_targets_pods_come_and_go_with_the_lease() {
    let berth = berth();
    let ns = berth.cluster.namespace("install-deploy").await.unwrap();
    // Pods that ignore SIGTERM (`sleep` as PID 1) with a grace period of a
    // minute; the lease's stop budget is 5 s.
    let mut worker = sleepers("worker");
    let pod_spec = worker.spec.as_mut().and_then(|s| s.template.spec.as_mut()).unwrap();
    pod_spec.termination_grace_period_seconds = Some(60);
    ns.api::<Deployment>().create(&PostParams::default(), &worker).await.unwrap();
    let target = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"});
    let mut gate = lease("worker", target, serde_json::json!({"replicas": 2}), serde_json::json!({"replicas": 0}));
    gate.spec.stop_seconds = 5;
    ns.api::<BerthLease>().create(&PostParams::default(), &gate).await.unwrap();
    let pods = ns.api::<Pod>();
    let running = || async {
        let list = pods.list(&ListParams::default().labels("app=worker")).await.unwrap().items;
        let phases: BTreeMap<String, (String, Option<i64>)> = list
            .into_iter()
            .map(|p| {
                let grace = p.metadata.deletion_grace_period_seconds;
                (p.metadata.name.unwrap(), (p.status.and_then(|s| s.phase).unwrap_or_default(), grace))
            })
            .collect();
        phases
    };

    run(cli(berth, &ns.name).args(["lease", "acquire", "worker", "--holder", "demo/deploy", "--ttl", "5m"]), "acquire");
    eventually("two worker pods run", Duration::from_secs(120), || async {
        let phases = running().await;
        (phases.len() == 2 && phases.values().all(|(p, _)| p == "Running")).then_some(())
    })
    .await;

    run(cli(berth, &ns.name).args(["lease", "release", "worker"]), "release");
    // Each pod's grace period as last seen before it went.
    let last_grace = std::cell::RefCell::new(BTreeMap::new());
    eventually("every worker pod is gone", Duration::from_secs(120), || async {
        let phases = running().await;
        for (name, (_, grace)) in &phases {
            last_grace.borrow_mut().insert(name.clone(), *grace);
        }
        phases.is_empty().then_some(())
    })
    .await;
    let last_grace = last_grace.into_inner();
    assert!(
        last_grace.values().all(|grace| grace.is_some_and(|g| g <= 5)),
        "the operator did not shorten the pods' grace period to the stop budget: {last_grace:?}"
    );
    let leases = ns.api::<BerthLease>();
    let stopped = eventually("the lease records its target stopped", Duration::from_secs(60), || async {
        leases.get("worker").await.ok()?.status?.target?.stopped_at
    })
    .await;
    let events = ns.kubectl_output(&["get", "events", "--field-selector", "reason=TargetStopped", "-o", "name"]);
    assert!(!events.trim().is_empty(), "no TargetStopped Event");
    println!("the released Deployment's pods were gone by {stopped}");
}

#[tokio::test]
async fn killing_the_operators_leader_pod_hands_leadership_to_the_other_replica() {
    let berth = berth();
    let (leader, successor, after) = crash_the_leader(&berth.cluster).await;
    // The figure for docs/testing.md; timing is reported, never asserted.
    println!("leadership moved from {leader} to {successor} {:.1} s after the kill", after.as_secs_f64());
}

/// Crashes the pod of the operator replica that leads in `cluster` and waits
/// until the other replica leads; returns both pod names and how long that took.
async fn crash_the_leader(cluster: &Cluster) -> (String, String, Duration) {
    let client = cluster.client().await.unwrap();
    let leases = Api::<Lease>::namespaced(client.clone(), SYSTEM);
    let pods = Api::<Pod>::namespaced(client.clone(), SYSTEM);
    // The holder identity is `<pod name>_<pid>`.
    let holder = || async {
        let holder = leases.get("berth-operator").await.ok()?.spec?.holder_identity?;
        let pod = holder.rsplit_once('_')?.0.to_owned();
        pods.get_opt(&pod).await.ok()?.filter(|p| p.metadata.deletion_timestamp.is_none()).map(|_| pod)
    };
    let leader = eventually("an operator pod leads", Duration::from_secs(60), holder).await;
    let uid = pods.get(&leader).await.unwrap().metadata.uid.unwrap();

    // A crash: no process of the pod runs its shutdown, so nothing releases the
    // leader Lease; the standby takes over once it has gone unrenewed for its duration.
    let killed = Instant::now();
    assert!(cluster.kill_pod(&uid).unwrap() > 0, "no process of {leader} ran");
    run(
        cluster.kubectl().unwrap().args(["-n", SYSTEM, "delete", "pod", &leader, "--grace-period=0", "--force"]),
        "deleting the killed leader pod",
    );
    let successor = eventually("the other replica leads", Duration::from_secs(120), || async {
        holder().await.filter(|pod| *pod != leader)
    })
    .await;
    (leader, successor, killed.elapsed())
}

#[tokio::test]
async fn a_member_operator_signs_in_with_its_projected_token_and_holds_the_global_lease() {
    let berth = berth();
    let east = &berth.east;
    let k = kubectl_line(east);
    let crd = repo_root().join("config/crd/berthlease.yaml");
    run(east.kubectl().unwrap().args(["apply", "--server-side", "-f"]).arg(&crd), "applying the CRD on east");
    sh(&format!("{k} create namespace {SYSTEM} --dry-run=client -o yaml | {k} apply -f -"));
    sh(&format!(
        "{k} -n {SYSTEM} create secret generic berth-ca --from-file=ca.crt={} --dry-run=client -o yaml | {k} apply -f -",
        berth.ca.display()
    ));
    run(
        Command::new(helm())
            .env("KUBECONFIG", &east.kubeconfig)
            .args(["upgrade", "--install", "berth-operator"])
            .arg(repo_root().join("deploy/helm/berth-operator"))
            .args(["--namespace", SYSTEM, "--wait", "--timeout", "5m"])
            .args([
                "--set=image.repository=berth.local/operator",
                "--set=image.tag=dev",
                "--set=image.pullPolicy=Never",
                "--set=member.enabled=true",
                &format!("--set=member.apiServer={}", berth.url),
                "--set=member.clusterId=east",
                "--set=member.ca.secretName=berth-ca",
                "--set=berthApiToken.projected=true",
            ]),
        "helm upgrade --install berth-operator on east",
    );

    // The same namespace on both sides; the global lease in the coordination
    // cluster has no target and no tenant label (docs/multicluster.md).
    let name = berth_testenv::TestNamespace::unique_name("member");
    let global = berth.cluster.namespace_named(&name).await.unwrap();
    let local = east.namespace_named(&name).await.unwrap();
    let spec = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({
            "leaseName": "ingest", "ttlSeconds": 30, "heartbeatIntervalSeconds": 10, "semantics": "at-most-once",
        });
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<BerthLease>(serde_json::json!({
            "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
            "metadata": {"name": "ingest"}, "spec": spec,
        }))
        .unwrap()
    };
    global.api::<BerthLease>().create(&PostParams::default(), &spec(serde_json::json!({}))).await.unwrap();
    local.api::<Deployment>().create(&PostParams::default(), &sleepers("ingest")).await.unwrap();
    let claim = spec(serde_json::json!({
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"},
        "acquireAction": {"replicas": 1}, "releaseAction": {"replicas": 0},
    }));
    local.api::<BerthLease>().create(&PostParams::default(), &claim).await.unwrap();

    let leases = global.api::<BerthLease>();
    eventually("east holds the global lease", Duration::from_secs(120), || async {
        let holders = leases.get("ingest").await.ok()?.status?.holders;
        holders.iter().any(|h| h.identity == "east").then_some(())
    })
    .await;
    let pods = local.api::<Pod>();
    let running = || async {
        let list = pods.list(&ListParams::default().labels("app=ingest")).await.ok()?.items;
        list.into_iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    };
    let workload = eventually("east's workload runs", Duration::from_secs(120), running).await;

    // It signed in with the kubelet's projected token: no key Secret exists on east.
    let client = east.client().await.unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), SYSTEM);
    assert!(secrets.get_opt("berth-member-key").await.unwrap().is_none(), "a key was copied to east");
    let operator = Api::<Deployment>::namespaced(client, SYSTEM).get("berth-operator").await.unwrap();
    let volumes = operator.spec.unwrap().template.spec.unwrap().volumes.unwrap_or_default();
    let audiences: Vec<String> = volumes
        .iter()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref().and_then(|t| t.audience.clone()))
        .collect();
    assert_eq!(audiences, ["berth"], "{volumes:?}");

    // Leader failover in the member: the acting replica's pod crashes; the
    // standby takes over and resumes the tenure with the same token, and
    // the workload's process neither stops nor restarts.
    let tenure = |lease: BerthLease| {
        let status = lease.status?;
        let east = status.holders.into_iter().find(|h| h.identity == "east")?;
        Some((east.fencing_token, east.renewed_at))
    };
    let (token, _) = tenure(leases.get("ingest").await.unwrap()).expect("east holds");
    let (leader, successor, after) = crash_the_leader(east).await;
    // The old leader is gone: every renew from here on is the new leader's.
    let (_, last) = tenure(leases.get("ingest").await.unwrap()).expect("east still holds");
    let (renewed_token, _) = eventually("the new leader renews east's tenure", Duration::from_secs(120), || async {
        tenure(leases.get("ingest").await.ok()?).filter(|(_, renewed)| *renewed > last)
    })
    .await;
    assert_eq!(renewed_token, token, "the tenure resumed with its token");
    let container = |pod: &Pod| {
        let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        Some((status.restart_count, status.state?.running?.started_at))
    };
    let now = running().await.expect("east's workload still runs");
    assert_eq!(now.metadata.uid, workload.metadata.uid, "the workload's pod was replaced");
    assert_eq!(container(&now), container(&workload), "the workload's container restarted");
    let fenced =
        sh(&format!("{k} -n {name} get events --field-selector reason=Fenced,involvedObject.name=ingest -o name"));
    assert!(fenced.trim().is_empty(), "east fenced across the failover: {fenced}");
    println!("member leadership moved from {leader} to {successor} {:.1} s after the kill", after.as_secs_f64());
}
