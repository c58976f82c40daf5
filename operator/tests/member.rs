//! Member mode end to end, on two real control planes: the coordination plane
//! (the test control plane, with the Berth apiserver) and a member plane of
//! its own (etcd + kube-apiserver) where the `operator` binary runs with
//! `--berth-api-server`.

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
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use support::{Operator, cronjob_target, eventually, lease};

const LEASE: &str = "ingest";
const CRONJOB: &str = "ingest-pipeline";
/// Generous bounds for what must happen within a few TTLs of 4 s.
const SOON: Duration = Duration::from_secs(30);

/// The member plane: a control plane of its own under `.run/test-member-plane`.
async fn member_plane() -> (Client, PathBuf) {
    let dir = berth_testenv::repo_root().join(".run/test-member-plane");
    let output = Command::new(berth_testenv::repo_root().join("hack/control-plane"))
        .arg("up")
        .env("BERTH_CONTROL_PLANE_DIR", &dir)
        .output()
        .expect("hack/control-plane runs");
    assert!(output.status.success(), "member plane: {}", String::from_utf8_lossy(&output.stderr));
    let kubeconfig = dir.join("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("kubeconfig reads"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kubeconfig is valid");
    let client = Client::try_from(config).expect("client builds");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = BerthLease::crd();
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(&name, &PatchParams::apply("berth-test").force(), &Patch::Apply(&crd)).await.expect("CRD applies");
    eventually("the CRD is established on the member plane", SOON, || async {
        let crd = crds.get(&name).await.ok()?;
        let conditions = crd.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
    (client, kubeconfig)
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
        &berth.url,
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

    // 4. Deleting the member lease: releaseAction, then a REST release, then the finalizer goes.
    local.delete(LEASE, &DeleteParams::default()).await.unwrap();
    eventually("the member lease is gone", SOON, || async { local.get_opt(LEASE).await.ok()?.is_none().then_some(()) })
        .await;
    assert!(cronjobs.get(CRONJOB).await.unwrap().spec.suspend.unwrap(), "releaseAction on deletion");
    let released = view.get(&ns, LEASE).await.unwrap();
    assert!(released.holders.is_empty(), "the global lease is released: {released:?}");

    // 5. Another holder takes the global lease: a new claim stands by.
    let west = LeaseKeeper::acquire(view.clone(), KeeperOptions::new(&ns, LEASE, "west", Duration::from_secs(4)))
        .await
        .expect("west acquires the released lease");
    local.create(&PostParams::default(), &lease(LEASE, spec)).await.expect("the member lease creates again");
    let (holder, standby_token) = wait_state(&local, LeaseState::Standby).await;
    assert_eq!((holder.as_str(), standby_token), ("west", west.fencing_token()));
    assert!(cronjobs.get(CRONJOB).await.unwrap().spec.suspend.unwrap(), "a standby stays suspended");

    // 6. West lets go: the standby's waiting acquire takes over with a higher token.
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
