//! The harness's real node (`hack/control-plane up --node`): pods run on it
//! as processes, kube-apiserver reads their logs through kubelet's
//! authenticated port, and a Service's ClusterIP reaches its pod through
//! kube-proxy.

use std::time::Duration;

use berth_testenv::clusters::Cluster;
use berth_testenv::eventually;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};

/// The cluster with a node that the node tests share.
const CLUSTER: &str = "nodes";

/// A busybox pod (the image the harness imports into every node) running `script`.
fn busybox_pod(name: &str, script: &str, restart: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "berth.local/busybox:dev",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }],
        },
    }))
    .expect("pod is valid")
}

async fn phase(pods: &Api<Pod>, name: &str, want: &str) -> Pod {
    eventually(&format!("pod {name} is {want}"), Duration::from_secs(120), || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.as_deref()?;
        assert!(phase != "Failed" || want == "Failed", "pod {name} failed: {:?}", pod.status);
        (phase == want).then_some(pod)
    })
    .await
}

#[tokio::test]
async fn a_pod_runs_to_completion_and_its_log_is_readable() {
    let cluster = Cluster::up_with_node(CLUSTER).unwrap();
    let ns = cluster.namespace("pod").await.unwrap();
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &busybox_pod("hello", "echo hello from $(hostname)", "Never")).await.unwrap();

    let pod = phase(&pods, "hello", "Succeeded").await;
    let ip = pod.status.and_then(|s| s.pod_ip).expect("the pod had an IP");
    assert!(ip.starts_with("198.19."), "pod IP {ip} is outside the node's pod range");
    // kubectl logs goes kube-apiserver → kubelet, with a client certificate and webhook authorization.
    let log = ns.kubectl_output(&["logs", "hello"]);
    assert_eq!(log.trim(), "hello from hello");
}

#[tokio::test]
async fn a_service_cluster_ip_reaches_its_pod() {
    let cluster = Cluster::up_with_node(CLUSTER).unwrap();
    let ns = cluster.namespace("service").await.unwrap();
    let pods = ns.api::<Pod>();
    let serve = "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";
    pods.create(&PostParams::default(), &busybox_pod("web", serve, "Always")).await.unwrap();
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    let service = ns.api::<Service>().create(&PostParams::default(), &service).await.unwrap();
    let ip = service.spec.and_then(|s| s.cluster_ip).expect("the Service has a ClusterIP");
    phase(&pods, "web", "Running").await;

    // The client retries until kube-proxy has programmed the Service's endpoint.
    // (nc: the static busybox's wget crashes in glibc's resolver.) A try that
    // timed out says so on stderr, which the pod's log would show: silenced.
    let request = r"printf 'GET / HTTP/1.0\r\n\r\n'";
    let fetch = format!(
        "until out=$({request} | nc -w 2 {ip} 80 2>/dev/null) && [ -n \"$out\" ]; do sleep 0.2; done; \
         echo \"$out\" | tail -n 1"
    );
    pods.create(&PostParams::default(), &busybox_pod("client", &fetch, "Never")).await.unwrap();
    phase(&pods, "client", "Succeeded").await;
    assert_eq!(ns.kubectl_output(&["logs", "client"]).trim(), "served by web");
}

#[tokio::test]
async fn down_cleans_up_after_a_crashed_node() {
    let cluster = Cluster::up_with_node("node-crash").unwrap();
    let ns = cluster.namespace("crash").await.unwrap();
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &busybox_pod("sleeper", "exec sleep 3600", "Always")).await.unwrap();
    phase(&pods, "sleeper", "Running").await;
    let slot = std::fs::read_to_string(cluster.dir.join("node/slot")).unwrap().trim().to_owned();
    let pod_processes = |slot: &str| {
        let root = format!("/sys/fs/cgroup/pids/berth-{slot}/kubepods");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("cat $(find {root} -name cgroup.procs 2>/dev/null) 2>/dev/null")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    let running = pod_processes(&slot);
    assert!(!running.is_empty(), "the pod's processes are in the node's cgroups");

    // A crash: every process the harness started dies at once, and nothing cleans up.
    let pid_files = ["etcd", "kube-apiserver"].iter().map(|p| cluster.dir.join(format!("{p}.pid"))).chain(
        ["containerd", "kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"]
            .iter()
            .map(|p| cluster.dir.join(format!("node/{p}.pid"))),
    );
    for file in pid_files {
        let pid = std::fs::read_to_string(&file).unwrap();
        std::process::Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
    }
    cluster.down().unwrap();

    let node_dir = cluster.dir.join("node").display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&node_dir)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
    assert!(!std::path::Path::new(&format!("/run/netns/berth-{slot}")).exists(), "the network namespace is left");
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(format!("berth-{slot}")))
        .filter(|p| p.exists())
        .collect::<Vec<_>>();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    for pid in running {
        // Gone, or a zombie waiting for its new parent to reap it: either way it runs no more.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        assert!(matches!(state, None | Some(Some('Z'))), "the pod's process {pid} still runs: {state:?}");
    }
    let links = std::process::Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8(links.stdout).unwrap();
    assert!(!links.contains(&format!("berth{slot}@")), "the node's link is left: {links}");
}
