//! Member mode end to end, on two real control planes: the coordination plane
//! (the test control plane, with the Berth apiserver) and the member plane
//! `east` of the harness, where the `operator` binary runs with
//! `--berth-api-server`, through a loopback proxy that can cut it off.

#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{BerthLease, LeaseState};
use berth_client::{Client as BerthClient, KeeperOptions, LeaseKeeper};
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::clusters::Cluster;
use berth_testenv::proxy::{Mode, Proxy};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::{Operator, cronjob_target, eventually, lease};

const LEASE: &str = "ingest";
const CRONJOB: &str = "ingest-pipeline";
/// Generous bounds for what must happen within a few TTLs of 4 s.
const SOON: Duration = Duration::from_secs(30);

/// The member plane: cluster `east` of the harness, with the CRD.
async fn member_plane() -> (Client, PathBuf) {
    let east = Cluster::up("east").expect("the east control plane starts");
    let client = east.client_with_crd().await.expect("the CRD is established on east");
    (client, east.kubeconfig)
}

/// Every value of `spec.suspend` the CronJob had, with when it was seen.
type History = Arc<Mutex<Vec<(DateTime<Utc>, bool)>>>;

fn record_suspensions(api: Api<CronJob>) -> History {
    let history: History = Arc::default();
    let sink = history.clone();
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={CRONJOB}"));
        let mut changes = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(Ok(cronjob)) = changes.next().await {
            let suspend = cronjob.spec.suspend.unwrap_or(false);
            let mut history = sink.lock().unwrap();
            if history.last().is_none_or(|(_, last)| *last != suspend) {
                history.push((Utc::now(), suspend));
            }
        }
    });
    history
}

fn suspended_since(history: &History, from: usize) -> Option<DateTime<Utc>> {
    history.lock().unwrap().iter().skip(from).find(|(_, suspend)| *suspend).map(|(at, _)| *at)
}

async fn local_state(api: &Api<BerthLease>) -> Option<(LeaseState, String, i32)> {
    let status = api.get(LEASE).await.ok()?.status?;
    let holder = status.holders.first().map(|h| h.identity.clone()).unwrap_or_default();
    Some((status.state, holder, status.fencing_token))
}

async fn wait_state(api: &Api<BerthLease>, state: LeaseState) -> (String, i32) {
    eventually(&format!("the member lease is {}", state.as_str()), SOON, || async {
        local_state(api).await.filter(|(s, _, _)| *s == state).map(|(_, holder, token)| (holder, token))
    })
    .await
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn member_holds_resumes_fences_and_hands_over() {
    // The coordination plane: the global lease (no tenant label, no target),
    // and an apiserver with a key per cluster.
    let coordination = TestNamespace::new("member").await;
    let ns = coordination.name.clone();
    let global = coordination.api::<BerthLease>();
    global
        .create(&PostParams::default(), &lease(LEASE, json!({"ttlSeconds": 4, "heartbeatIntervalSeconds": 1})))
        .await
        .expect("the global lease creates");
    let mut berth = ApiServer::start(vec![Tenant::new("east", &[&ns]), Tenant::new("west", &[&ns])], &[&ns], &[]);
    let upstream = berth.url.trim_start_matches("https://").parse().expect("the apiserver listens on an address");
    let proxy = Proxy::start(upstream).expect("the proxy starts");
    let through_proxy = format!("https://{}", proxy.addr());
    let key_file = berth.dir.join("east.key");
    std::fs::write(&key_file, berth.key("east")).unwrap();

    // The member plane: the same namespace, a suspended CronJob and the claim.
    let (member, member_kubeconfig) = member_plane().await;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(member.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
    let cronjobs: Api<CronJob> = Api::namespaced(member.clone(), &ns);
    let cronjob: CronJob = serde_json::from_value(json!({
        "metadata": {"name": CRONJOB},
        "spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cronjob).await.expect("cronjob creates");
    let history = record_suspensions(cronjobs.clone());
    let local: Api<BerthLease> = Api::namespaced(member.clone(), &ns);
    let mut spec = cronjob_target(CRONJOB);
    spec["ttlSeconds"] = json!(4);
    spec["heartbeatIntervalSeconds"] = json!(1);
    local.create(&PostParams::default(), &lease(LEASE, spec.clone())).await.expect("the member lease creates");

    let member_flags = [
        "--berth-api-server",
        &through_proxy,
        "--berth-api-key-file",
        key_file.to_str().unwrap(),
        "--berth-ca-file",
        berth.ca_file.to_str().unwrap(),
        "--cluster-id",
        "east",
    ];
    let start = || {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_operator"));
        Operator::from(berth_testenv::operator::Operator::start(binary, &member_kubeconfig, &[&ns], &member_flags))
    };

    // 1. The member acquires the global lease for "east" and resumes its CronJob.
    let mut operator = start();
    let (holder, token) = wait_state(&local, LeaseState::Held).await;
    assert_eq!(holder, "east");
    let view =
        BerthClient::builder(&berth.url).api_key(berth.key("west")).ca_file(&berth.ca_file).unwrap().build().unwrap();
    let global_view = view.get(&ns, LEASE).await.unwrap();
    assert_eq!(global_view.holders[0].identity, "east");
    assert_eq!(token, global_view.fencing_token, "TOKEN shows the global token");
    eventually("the CronJob is resumed", SOON, || async {
        (!cronjobs.get(CRONJOB).await.ok()?.spec.suspend.unwrap_or(true)).then_some(())
    })
    .await;
    eventually("/readyz answers 200", SOON, || async {
        (support::http_get(operator.probe_port, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let printed = Command::new(berth_testenv::bin_dir().join("kubectl"))
        .env("KUBECONFIG", &member_kubeconfig)
        .args(["get", "bl", LEASE, "-n", &ns, "--no-headers"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(printed[1..4], ["held".to_owned(), "east".to_owned(), token.to_string()], "{printed:?}");

    // 2. The operator is killed and restarted: it resumes the live tenure with
    // the same token, and the CronJob is never suspended meanwhile.
    let resumed_at = history.lock().unwrap().len();
    operator.kill();
    let operator = start();
    eventually("the restarted operator answers a fresh confirmation", SOON, || async {
        (operator
            .metric(&format!("berth_operator_member_state{{namespace=\"{ns}\",name=\"{LEASE}\",state=\"held\"}}"))
            .await
            == 1.0)
            .then_some(())
    })
    .await;
    let (_, token_after_restart) = wait_state(&local, LeaseState::Held).await;
    assert_eq!(token_after_restart, token, "a re-acquire by the same holder is a renew");
    assert_eq!(suspended_since(&history, resumed_at), None, "the CronJob stopped during the restart");

    // 3. The Berth apiserver pauses: no renew is answered, and the member
    // fences itself: the CronJob is suspended before the global hold expires.
    signal(berth.pid().unwrap(), "-STOP");
    let fenced_from = history.lock().unwrap().len();
    wait_state(&local, LeaseState::Fenced).await;
    let suspended_at =
        eventually("the fenced CronJob is suspended", SOON, || async { suspended_since(&history, fenced_from) }).await;
    // Read straight from the coordination plane while the apiserver is still
    // paused: nothing else writes the global lease meanwhile.
    let stored = global.get(LEASE).await.unwrap().status.unwrap();
    let hold = stored.holders.first().expect("the paused hold is still stored");
    assert_eq!(hold.identity, "east");
    assert!(
        suspended_at < hold.expires_at,
        "suspended at {suspended_at}, but the global hold could be taken over from {}",
        hold.expires_at
    );
    eprintln!("fenced {} ms before the global hold expired", (hold.expires_at - suspended_at).num_milliseconds());
    signal(berth.pid().unwrap(), "-CONT");
    support::wait_event_on(&member, &ns, LEASE, "Fenced").await;
    // Reachable again: the member takes the lease back.
    wait_state(&local, LeaseState::Held).await;

    // 4. The member is cut off, in both ways a network can: it fences itself
    // before the global hold can expire, and takes the lease back once the
    // network heals (nobody else wanted it).
    for mode in [Mode::Blackhole, Mode::Reset] {
        let from = history.lock().unwrap().len();
        proxy.set_mode(mode);
        wait_state(&local, LeaseState::Fenced).await;
        let suspended_at =
            eventually("the cut-off CronJob is suspended", SOON, || async { suspended_since(&history, from) }).await;
        let stored = global.get(LEASE).await.unwrap().status.unwrap();
        let hold = stored.holders.iter().find(|h| h.identity == "east").expect("east's hold is still stored");
        assert!(suspended_at < hold.expires_at, "{mode}: suspended at {suspended_at}, hold until {}", hold.expires_at);
        eprintln!(
            "{mode}: fenced {} ms before the global hold expired",
            (hold.expires_at - suspended_at).num_milliseconds()
        );
        assert!(
            stored.holders.iter().all(|h| h.identity == "east"),
            "{mode}: nobody else holds the lease while east was cut off: {:?}",
            stored.holders
        );
        proxy.set_mode(Mode::Pass);
        wait_state(&local, LeaseState::Held).await;
    }
    // On the way to the fence, the failed renews put the lease at risk.
    let (kind, _) = support::wait_event_on(&member, &ns, LEASE, "RenewFailed").await;
    assert_eq!(kind, "Warning");

    // 5. Deleting the member lease: releaseAction, then a REST release, then the finalizer goes.
    local.delete(LEASE, &DeleteParams::default()).await.unwrap();
    eventually("the member lease is gone", SOON, || async { local.get_opt(LEASE).await.ok()?.is_none().then_some(()) })
        .await;
    assert!(cronjobs.get(CRONJOB).await.unwrap().spec.suspend.unwrap(), "releaseAction on deletion");
    let released = view.get(&ns, LEASE).await.unwrap();
    assert!(released.holders.is_empty(), "the global lease is released: {released:?}");

    // 6. Another holder takes the global lease: a new claim stands by.
    let west = LeaseKeeper::acquire(view.clone(), KeeperOptions::new(&ns, LEASE, "west", Duration::from_secs(4)))
        .await
        .expect("west acquires the released lease");
    local.create(&PostParams::default(), &lease(LEASE, spec)).await.expect("the member lease creates again");
    let (holder, standby_token) = wait_state(&local, LeaseState::Standby).await;
    assert_eq!((holder.as_str(), standby_token), ("west", west.fencing_token()));
    assert!(cronjobs.get(CRONJOB).await.unwrap().spec.suspend.unwrap(), "a standby stays suspended");

    // 7. West lets go: the standby's waiting acquire takes over with a higher token.
    west.release().await.unwrap();
    let (holder, token) = wait_state(&local, LeaseState::Held).await;
    assert_eq!(holder, "east");
    assert!(token > standby_token);
    eventually("the CronJob is resumed after the takeover", SOON, || async {
        (!cronjobs.get(CRONJOB).await.ok()?.spec.suspend.unwrap_or(true)).then_some(())
    })
    .await;
    support::wait_event_on(&member, &ns, LEASE, "Acquired").await;
    drop(operator);
    berth.kill();
}

/// A key file with a key nobody knows (these tests never reach an apiserver).
fn unused_key_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("berth-member-key-{}", std::process::id()));
    std::fs::write(&path, "not-a-key\n").unwrap();
    path
}

fn member_mode_without_id(kubeconfig: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let key_file = unused_key_file();
    Command::new(env!("CARGO_BIN_EXE_operator"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--metrics-bind-address", "0", "--health-probe-bind-address", "0"])
        .args(["--berth-api-server", "https://127.0.0.1:1", "--berth-api-key-file"])
        .arg(&key_file)
        .args(extra)
        .output()
        .expect("the operator runs")
}

#[tokio::test]
async fn member_mode_takes_the_cluster_id_from_the_flag_or_the_about_api_and_refuses_without_one() {
    let (member, kubeconfig) = member_plane().await;

    // Not an RFC 1123 label: refused before anything else.
    let out = member_mode_without_id(&kubeconfig, &["--cluster-id", "East_1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RFC 1123 label"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Neither the flag nor the About API's ClusterProperty: a clear refusal.
    let crds: Api<CustomResourceDefinition> = Api::all(member.clone());
    let _ = crds.delete("clusterproperties.about.k8s.io", &DeleteParams::default()).await;
    eventually("the About API is absent", SOON, || async {
        crds.get_opt("clusterproperties.about.k8s.io").await.ok()?.is_none().then_some(())
    })
    .await;
    let out = member_mode_without_id(&kubeconfig, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pass --cluster-id") && stderr.contains("cluster.clusterset.k8s.io"), "{stderr}");

    // The About API names the cluster: member mode starts with that id.
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        // The upstream CRD carries this annotation too: about.k8s.io is a protected group.
        "metadata": {"name": "clusterproperties.about.k8s.io",
                     "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/3084"}},
        "spec": {"group": "about.k8s.io", "scope": "Cluster",
                 "names": {"plural": "clusterproperties", "singular": "clusterproperty", "kind": "ClusterProperty"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {"value": {"type": "string"}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.expect("the About API CRD creates");
    let about = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("about.k8s.io", "v1alpha1", "ClusterProperty"),
        "clusterproperties",
    );
    let properties: Api<DynamicObject> = Api::all_with(member.clone(), &about);
    let property: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
        "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "east-from-about"}
    }))
    .unwrap();
    eventually("the ClusterProperty creates", SOON, || async {
        properties.create(&PostParams::default(), &property).await.ok().map(drop)
    })
    .await;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_operator"));
    let key_file = unused_key_file();
    let berth = ["--berth-api-server", "https://127.0.0.1:1", "--berth-api-key-file", key_file.to_str().unwrap()];
    let ns = format!("about-{}", std::process::id());
    let operator = Operator::from(berth_testenv::operator::Operator::start(binary, &kubeconfig, &[&ns], &berth));
    eventually("the operator logs the About API's cluster id", SOON, || async {
        operator.logs().contains("east-from-about").then_some(())
    })
    .await;
    crds.delete("clusterproperties.about.k8s.io", &DeleteParams::default()).await.expect("the About API CRD deletes");
}
