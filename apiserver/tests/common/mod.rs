//! Shared test support: the router in process on a real control plane, and an
//! HTTPS client for the `apiserver` binary started by `berth_testenv::apiserver`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_apiserver::auth::KeySet;
use berth_apiserver::metrics::Metrics;
use berth_apiserver::{App, router};
use berth_testenv::TestNamespace;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tower::ServiceExt;

/// Keys used by the in-process harness.
pub const KEY_EAST: &str = "key-east";
pub const KEY_WEST: &str = "key-west";
/// A tenant allowed in every namespace (a two-field line).
pub const KEY_ANY: &str = "key-any";
/// Tenants `set-east` and `set-west` of the cluster set `members`.
pub const KEY_SET_EAST: &str = "key-set-east";
pub const KEY_SET_WEST: &str = "key-set-west";

pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// An answer, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The `error` message of a JSON error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_else(|| panic!("no error message in {self:?}"))
    }
}

/// The router of one apiserver, in this process, watching one fresh namespace.
/// Tenants: `east` and `west` limited to that namespace, `any` unlimited.
pub struct Harness {
    pub ns: TestNamespace,
    pub app: Arc<App>,
    router: axum::Router,
    _shutdown: watch::Sender<bool>,
}

impl Harness {
    pub async fn new(prefix: &str) -> Self {
        let ns = TestNamespace::new(prefix).await;
        let keys = format!(
            "east:{}:{ns}\nwest:{}:{ns}\nany:{}\nset-east:{}:{ns}:members\nset-west:{}::members\n",
            sha256_hex(KEY_EAST),
            sha256_hex(KEY_WEST),
            sha256_hex(KEY_ANY),
            sha256_hex(KEY_SET_EAST),
            sha256_hex(KEY_SET_WEST),
            ns = ns.name
        );
        let keys = Arc::new(KeySet::parse(&keys).expect("test keys parse"));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let app = App::start(
            ns.client.clone(),
            std::slice::from_ref(&ns.name),
            keys,
            Arc::new(Metrics::default()),
            shutdown,
            Default::default(),
        );
        berth_testenv::eventually(
            "ready: the cache synced, the create path answered",
            Duration::from_secs(30),
            || async { (app.cache.is_ready() && app.create_path.is_warm()).then_some(()) },
        )
        .await;
        let router = router(app.clone());
        Self { ns, app, router, _shutdown: shutdown_tx }
    }

    /// `/v1alpha1/namespaces/<ns>/leases/<name><suffix>`
    pub fn lease_path(&self, name: &str, suffix: &str) -> String {
        format!("/v1alpha1/namespaces/{}/leases/{name}{suffix}", self.ns.name)
    }

    /// Sends one request through the router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body reads");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, text, json }
    }

    /// `method path` with a bearer key (when given) and a raw body.
    pub async fn call(&self, method: &str, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(Body::from(body.to_owned())).expect("request builds")).await
    }

    pub async fn post(&self, name: &str, verb: &str, key: &str, body: Value) -> Reply {
        self.call("POST", &self.lease_path(name, &format!("/{verb}")), Some(key), &body.to_string()).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call("GET", path, Some(key), "").await
    }

    /// Waits until the cache holds `name` at the resourceVersion kube-apiserver has now.
    pub async fn wait_cached(&self, name: &str) {
        let api = self.ns.api::<berth_api::BerthLease>();
        let current = api.get(name).await.expect("lease exists").metadata.resource_version;
        berth_testenv::eventually(
            &format!("{name} at {current:?} reaches the cache"),
            Duration::from_secs(30),
            || async {
                let cached = self.app.cache.get(&self.ns.name, name);
                cached.is_some_and(|l| l.metadata.resource_version == current).then_some(())
            },
        )
        .await;
    }
}

/// A rustls client configuration that trusts only the CA of one test apiserver.
pub fn tls_client_config(ca_file: &std::path::Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("CA file reads") {
        roots.add(cert.expect("CA PEM parses")).expect("CA is a valid root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTPS client that trusts only the CA of one test apiserver.
pub fn https_client(ca_file: &std::path::Path) -> reqwest::Client {
    https_client_builder(ca_file).build().expect("HTTPS client builds")
}

/// The builder of [`https_client`], for tests that change more settings.
pub fn https_client_builder(ca_file: &std::path::Path) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls_client_config(ca_file)).timeout(Duration::from_secs(30))
}

/// POSTs JSON over HTTPS and returns the status and the parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body reads");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The Server-Sent Events of a watch response, read through the client's own
/// parser (keep-alive comments are no events).
pub struct Events {
    body: axum::body::BodyDataStream,
    parser: berth_client::sse::SseParser,
    ready: std::collections::VecDeque<berth_client::sse::SseEvent>,
}

impl Events {
    pub fn new(response: axum::response::Response) -> Self {
        Self { body: response.into_body().into_data_stream(), parser: Default::default(), ready: Default::default() }
    }

    /// The next event; panics when the stream ends.
    pub async fn next(&mut self) -> berth_client::sse::SseEvent {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            let chunk = self.chunk().await;
            self.ready.extend(self.parser.push(&chunk));
        }
    }

    /// The next chunk, which must hold no event; returns its text, for the
    /// caller to check that it is a keep-alive comment.
    pub async fn next_without_event(&mut self) -> String {
        assert!(self.ready.is_empty(), "events are still unread: {:?}", self.ready);
        let chunk = self.chunk().await;
        let events = self.parser.push(&chunk);
        assert!(events.is_empty(), "{events:?}");
        String::from_utf8_lossy(&chunk).into_owned()
    }

    async fn chunk(&mut self) -> axum::body::Bytes {
        use futures::StreamExt;
        self.body.next().await.expect("the stream stays open").expect("the stream reads")
    }
}
