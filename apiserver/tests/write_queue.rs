//! The write queue on the real control plane: shed answers write nothing,
//! the queue is bounded by its length, and renews are served before queued
//! acquires. The apiserver reaches kube-apiserver through a loopback proxy
//! that the test blackholes, so one write hangs in the single slot for as
//! long as the test needs; the test's own client goes straight to
//! kube-apiserver.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use berth_api::BerthLease;
use berth_apiserver::auth::KeySet;
use berth_apiserver::metrics::Metrics;
use berth_apiserver::write_queue::WriteLimit;
use berth_apiserver::{App, router};
use berth_testenv::TestNamespace;
use berth_testenv::proxy::{Mode, Proxy};
use chrono::Utc;
use common::{KEY_ANY, sha256_hex};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower::ServiceExt;

const WITHIN: Duration = Duration::from_secs(30);

/// An apiserver in this process whose kube-apiserver traffic passes `proxy`.
struct Queued {
    ns: TestNamespace,
    app: Arc<App>,
    proxy: Proxy,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Queued {
    async fn start(prefix: &str, limit: WriteLimit) -> Self {
        let ns = TestNamespace::new(prefix).await;
        let kubeconfig = kube::config::Kubeconfig::read_from(berth_testenv::kubeconfig_path()).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let upstream = format!("{}:{}", config.cluster_url.host().unwrap(), config.cluster_url.port_u16().unwrap());
        let proxy = Proxy::start(upstream.parse().unwrap()).unwrap();
        config.cluster_url = format!("https://{}", proxy.addr()).parse().unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let keys = Arc::new(KeySet::parse(&format!("any:{}\n", sha256_hex(KEY_ANY))).unwrap());
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let namespaces = std::slice::from_ref(&ns.name);
        let app = App::start(client, namespaces, keys, Arc::new(Metrics::default()), shutdown, limit);
        berth_testenv::eventually("the cache syncs", WITHIN, || async { app.cache.is_ready().then_some(()) }).await;
        Self { ns, app, proxy, _shutdown: shutdown_tx }
    }

    /// Sends one lease request in a task of its own: (status, Retry-After, body).
    fn post(&self, name: &str, verb: &str, body: Value) -> JoinHandle<(u16, Option<String>, Value)> {
        let request = Request::post(format!("/v1alpha1/namespaces/{}/leases/{name}/{verb}", self.ns.name))
            .header("authorization", format!("Bearer {KEY_ANY}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let router = router(self.app.clone());
        tokio::spawn(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    fn acquire(&self, name: &str, holder: &str) -> JoinHandle<(u16, Option<String>, Value)> {
        self.post(name, "acquire", json!({"holder": holder, "ttlSeconds": 300}))
    }

    fn renew(&self, name: &str, holder: &str) -> JoinHandle<(u16, Option<String>, Value)> {
        self.post(name, "renew", json!({"holder": holder, "fencingToken": 1, "ttlSeconds": 300}))
    }

    /// Acquires `name` for `holder` while the proxy passes, and waits until the cache has it.
    async fn held(&self, name: &str, holder: &str) -> BerthLease {
        let (status, _, body) = self.acquire(name, holder).await.unwrap();
        assert_eq!((status, body["acquired"].as_bool()), (200, Some(true)), "{name}: {body}");
        let lease = self.ns.api::<BerthLease>().get(name).await.unwrap();
        berth_testenv::eventually(&format!("{name} in the cache"), WITHIN, || async {
            let cached = self.app.cache.get(&self.ns.name, name)?;
            (cached.metadata.resource_version == lease.metadata.resource_version).then_some(())
        })
        .await;
        lease
    }

    /// Waits until `what` holds of the queue's metrics.
    async fn wait_queue(&self, what: &str, in_flight: i64, holding: i64, acquiring: i64) {
        let metrics = &self.app.metrics;
        berth_testenv::eventually(what, WITHIN, || async {
            let now = (
                metrics.writes_in_flight.get(),
                metrics.queued_writes("holding").get(),
                metrics.queued_writes("acquiring").get(),
            );
            (now == (in_flight, holding, acquiring)).then_some(())
        })
        .await;
    }

    /// Blackholes the proxy and starts a renew of `name` that takes the only
    /// slot and hangs in it.
    async fn hold_the_slot(&self, name: &str, holder: &str) -> JoinHandle<(u16, Option<String>, Value)> {
        self.proxy.set_mode(Mode::Blackhole);
        let stuck = self.renew(name, holder);
        self.wait_queue("the renew holds the slot", 1, 0, 0).await;
        stuck
    }
}

/// resourceVersion as etcd's revision: the order in which writes committed.
fn revision(lease: &BerthLease) -> u64 {
    lease.metadata.resource_version.as_deref().unwrap().parse().unwrap()
}

/// A shed acquirer is asked to wait 5 to 10 s, longer than any holder.
fn assert_acquirer_backs_off(retry_after: Option<&str>) {
    let seconds: u32 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((5..=10).contains(&seconds), "Retry-After {seconds} s");
}

#[tokio::test]
async fn a_full_queue_sheds_at_once_with_retry_after_and_writes_nothing() {
    let q = Queued::start("queue-full", WriteLimit { max_concurrent: 1, max_queued: 1 }).await;
    let api = q.ns.api::<BerthLease>();
    q.held("slot", "any/slot").await;
    q.held("kept", "any/kept").await;
    let shed_before = q.held("shed", "any/shed").await;
    let stuck = q.hold_the_slot("slot", "any/slot").await;

    // One acquire fills the queue (length 1); the next acquire is shed.
    let queued_acquire = q.acquire("new", "any/new");
    q.wait_queue("the acquire waits", 1, 0, 1).await;
    let (status, retry_after, body) = q.acquire("refused", "any/refused").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_acquirer_backs_off(retry_after.as_deref());
    assert_eq!(body, json!({"error": "overloaded, retry later"}));

    // A renew takes the queued acquire's place: the acquire is shed.
    let queued_renew = q.renew("kept", "any/kept");
    let (status, retry_after, body) = queued_acquire.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_acquirer_backs_off(retry_after.as_deref());
    q.wait_queue("the renew waits", 1, 1, 0).await;

    // The queue is full of a renew: the next renew is shed, and writes nothing.
    // It is asked back within the first half of what is left of its tenure.
    let tenure_end = shed_before.status.as_ref().unwrap().holders[0].expires_at;
    let half_left = (tenure_end - Utc::now()).num_seconds() / 2;
    let (status, retry_after, body) = q.renew("shed", "any/shed").await.unwrap();
    assert_eq!(status, 503, "{body}");
    let seconds: i64 = retry_after.as_deref().expect("Retry-After").parse().unwrap();
    assert!((1..=half_left).contains(&seconds), "Retry-After {seconds} s, {half_left} s is half the tenure left");
    assert_eq!(body, json!({"error": "overloaded, retry later"}));
    let shed_after = api.get("shed").await.unwrap();
    assert_eq!(shed_after.metadata.resource_version, shed_before.metadata.resource_version);
    assert_eq!(shed_after.status, shed_before.status);
    for absent in ["new", "refused"] {
        assert!(api.get_opt(absent).await.unwrap().is_none(), "the shed acquire created {absent}");
    }

    q.proxy.set_mode(Mode::Pass);
    for (name, request) in [("slot", stuck), ("kept", queued_renew)] {
        let (status, _, body) = request.await.unwrap();
        assert_eq!((status, body["acquired"].as_bool()), (200, Some(true)), "{name}: {body}");
    }
    q.wait_queue("the queue drains", 0, 0, 0).await;
    let metrics = q.app.metrics.encode();
    for counted in [
        r#"berth_apiserver_shed_requests_total{operation="acquire"} 2"#,
        r#"berth_apiserver_shed_requests_total{operation="renew"} 1"#,
    ] {
        assert!(metrics.contains(counted), "{counted} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn queued_renews_are_served_before_queued_acquires() {
    let q = Queued::start("queue-order", WriteLimit { max_concurrent: 1, max_queued: 4 }).await;
    let api = q.ns.api::<BerthLease>();
    q.held("slot", "any/slot").await;
    q.held("kept", "any/kept").await;
    let stuck = q.hold_the_slot("slot", "any/slot").await;

    // The acquire queues first, the renew after it.
    let acquire = q.acquire("new", "any/new");
    q.wait_queue("the acquire waits", 1, 0, 1).await;
    let renew = q.renew("kept", "any/kept");
    q.wait_queue("the renew waits too", 1, 1, 1).await;

    q.proxy.set_mode(Mode::Pass);
    for (name, request) in [("slot", stuck), ("kept", renew), ("new", acquire)] {
        let (status, _, body) = request.await.unwrap();
        assert_eq!((status, body["acquired"].as_bool()), (200, Some(true)), "{name}: {body}");
    }
    // With one slot, writes commit one after the other: the renew's commit
    // comes before the acquire's create.
    let (kept, new) = (api.get("kept").await.unwrap(), api.get("new").await.unwrap());
    assert!(revision(&kept) < revision(&new), "kept at {}, new at {}", revision(&kept), revision(&new));
}
