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
    // (nc: the static busybox's wget crashes in glibc's resolver.)
    let request = r"printf 'GET / HTTP/1.0\r\n\r\n'";
    let fetch = format!(
        "until out=$({request} | nc -w 2 {ip} 80) && [ -n \"$out\" ]; do sleep 0.2; done; echo \"$out\" | tail -n 1"
    );
    pods.create(&PostParams::default(), &busybox_pod("client", &fetch, "Never")).await.unwrap();
    phase(&pods, "client", "Succeeded").await;
    assert_eq!(ns.kubectl_output(&["logs", "client"]).trim(), "served by web");
}
