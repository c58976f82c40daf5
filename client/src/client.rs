//! [`Client`] and its builder: typed calls for every route of docs/api.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_api::wire::{
    AcquireRequest, AcquireResponse, LeaseList, LeaseView, MAX_WAIT_SECONDS, ReleaseRequest, RenewRequest,
    WatchEventKind,
};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::key::{BearerKey, KeyFile};
use crate::sse::{SseEvent, SseParser};
use crate::tls::{Trust, TrustedBy, client_config, read_ca_bundle};

/// How long a call may take when the builder is not told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A watch with no bytes for this long (three missed keep-alives) has broken off.
pub const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// A granted (or renewed) lease: the answer to acquire and renew when
/// `acquired` is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub holder: String,
    /// Pass it to downstream systems; they reject smaller ones.
    pub fencing_token: i32,
    /// The server's expiry, on the server's clock.
    pub expires_at: Option<DateTime<Utc>>,
    pub acquired_at: Option<DateTime<Utc>>,
}

impl From<Grant> for AcquireResponse {
    fn from(grant: Grant) -> Self {
        AcquireResponse {
            acquired: true,
            holder: grant.holder,
            fencing_token: Some(grant.fencing_token),
            expires_at: grant.expires_at,
            acquired_at: grant.acquired_at,
        }
    }
}

/// An async stream of lease views, one per change, starting with the current state.
pub type LeaseStream = BoxStream<'static, Result<LeaseView, Error>>;

/// The stream of a collection watch ([`Client::watch_all`], [`Client::watch_namespace`]).
pub type LeaseEventStream = BoxStream<'static, Result<LeaseEvent, Error>>;

/// One event of a collection watch.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseEvent {
    /// A lease the stream had not shown: first one per current lease, then each new one.
    Added(LeaseView),
    /// A new state of a lease already shown.
    Modified(LeaseView),
    /// The lease is gone, or no longer readable with this key: its last state shown.
    Deleted(LeaseView),
    /// Every current lease has been sent as [`LeaseEvent::Added`]; changes follow.
    InitialEventsEnd,
}

fn decode_lease_event(event: SseEvent) -> Option<Result<LeaseEvent, Error>> {
    let kind = WatchEventKind::from_name(&event.event)?;
    let view =
        || serde_json::from_str::<LeaseView>(&event.data).map_err(|e| Error::Decode(format!("watch event: {e}")));
    Some(match kind {
        WatchEventKind::Added => view().map(LeaseEvent::Added),
        WatchEventKind::Modified => view().map(LeaseEvent::Modified),
        WatchEventKind::Deleted => view().map(LeaseEvent::Deleted),
        WatchEventKind::Bookmark => Ok(LeaseEvent::InitialEventsEnd),
    })
}

/// A client of one Berth apiserver. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// What `http` was built from, to build a new pool: [`Client::with_fresh_connections`].
    tls: Arc<rustls::ClientConfig>,
    /// What the server's certificate is checked against, for error messages.
    trusted: TrustedBy,
    base: Url,
    key: Option<BearerKey>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("api_key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Configures a [`Client`]. Start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    base: String,
    key: Option<KeySource>,
    trust: Trust,
    timeout: Duration,
}

#[derive(Clone)]
enum KeySource {
    Plain(String),
    File(std::path::PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Plain(_) => f.write_str("Plain(<redacted>)"),
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl ClientBuilder {
    /// The key sent as `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(KeySource::Plain(key.into()));
        self
    }

    /// Reads the key from a file: once when [`Self::build`] runs, then again
    /// when it has changed (looked at, at most, once a second and right after
    /// a 401), so a rotating projected service-account token keeps working.
    /// Surrounding whitespace (a trailing newline) is ignored. While the file
    /// is briefly missing or empty, the last good key is sent.
    pub fn api_key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key = Some(KeySource::File(path.as_ref().to_owned()));
        self
    }

    /// Trusts only the CA certificates of this PEM bundle (instead of the
    /// system's trust store).
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or holds no certificate.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        self.trust = Trust::CaBundle(read_ca_bundle(path.as_ref())?);
        Ok(self)
    }

    /// Connects with a rustls configuration of the caller's own (client
    /// certificates, custom verifiers). Its ALPN list is replaced with
    /// HTTP/1.1, the only protocol this client speaks.
    pub fn rustls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.trust = Trust::Custom(Arc::new(config));
        self
    }

    /// Does not check the server's certificate at all. Anyone on the path
    /// can then read the API key. [`Self::build`] logs a warning.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.trust = Trust::Insecure;
        self
    }

    /// The time one call may take, connecting included ([`DEFAULT_TIMEOUT`]
    /// by default). An acquire with `waitSeconds` gets its wait on top.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// # Errors
    /// [`Error::Config`] for a URL that is not `https://host[:port][/prefix]`,
    /// an unreadable or empty key file, or an unusable TLS configuration.
    pub fn build(self) -> Result<Client, Error> {
        let mut base =
            Url::parse(&self.base).map_err(|e| Error::Config(format!("API server URL {:?}: {e}", self.base)))?;
        if base.scheme() != "https" {
            return Err(Error::Config(format!("API server URL {:?} must start with https://", self.base)));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::Config(format!("API server URL {:?} must not have a query or fragment", self.base)));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let key = match self.key {
            None => None,
            Some(KeySource::Plain(key)) if key.trim().is_empty() => {
                return Err(Error::Config("the API key is empty".to_owned()));
            }
            Some(KeySource::Plain(key)) => Some(BearerKey::Plain(Arc::from(key.trim()))),
            Some(KeySource::File(path)) => {
                Some(BearerKey::File(Arc::new(KeyFile::open(&path, std::time::Instant::now())?)))
            }
        };
        let tls = Arc::new(client_config(&self.trust)?);
        let http = http_client(&tls, self.timeout)?;
        Ok(Client { http, tls, trusted: self.trust.trusted_by(), base, key, timeout: self.timeout })
    }
}

impl Client {
    /// A builder for the apiserver at `base_url`, e.g. `https://berth.example.com:8443`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder { base: base_url.into(), key: None, trust: Trust::default(), timeout: DEFAULT_TIMEOUT }
    }

    /// A clone that opens new connections instead of sharing this client's
    /// pool. A request abandoned on a connection that stopped answering
    /// (a silently dropped route, a hung peer) leaves the pool's other
    /// connections suspect; the lease keeper retries on a fresh pool.
    ///
    /// # Errors
    /// [`Error::Config`] when the HTTP client cannot be built.
    pub fn with_fresh_connections(&self) -> Result<Client, Error> {
        Ok(Client { http: http_client(&self.tls, self.timeout)?, ..self.clone() })
    }

    /// The apiserver's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /healthz`: the server answers and its certificate is trusted. No key is needed.
    pub async fn ping(&self) -> Result<(), Error> {
        let response = self.send(Method::GET, "healthz", None, self.timeout).await?;
        expect_status(response, StatusCode::OK).await.map(drop)
    }

    /// Acquires `name` in `namespace`; idempotent for a live holder (then a
    /// renew). With `wait_seconds` set, the server holds the request until the
    /// lease is granted or the wait ends; this call's timeout grows by the wait.
    ///
    /// # Errors
    /// [`Error::NotAcquired`] when another holder has it, with that holder.
    pub async fn acquire(&self, namespace: &str, name: &str, request: &AcquireRequest) -> Result<Grant, Error> {
        let wait = Duration::from_secs(request.wait_seconds.unwrap_or(0).max(0).unsigned_abs().into());
        let path = lease_path(namespace, name, "acquire")?;
        let response = self.send(Method::POST, &path, Some(to_json(request)?), self.timeout + wait).await?;
        grant(json(expect_status(response, StatusCode::OK).await?)?)
    }

    /// Acquires, waiting up to `wait` when someone else holds the lease: in
    /// server-side waits (`waitSeconds`) of at most 300 s each, never asking
    /// more than once a second. A `wait` under a second does not wait.
    ///
    /// # Errors
    /// [`Error::NotAcquired`] when the wait ends without the lease, and
    /// every error of [`Self::acquire`].
    pub async fn acquire_with_wait(
        &self,
        namespace: &str,
        name: &str,
        request: &AcquireRequest,
        wait: Duration,
    ) -> Result<Grant, Error> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let started = tokio::time::Instant::now();
            let left = until.saturating_duration_since(started).as_secs();
            let wait_seconds = i32::try_from(left).unwrap_or(MAX_WAIT_SECONDS).min(MAX_WAIT_SECONDS);
            let request =
                AcquireRequest { wait_seconds: (wait_seconds > 0).then_some(wait_seconds), ..request.clone() };
            match self.acquire(namespace, name, &request).await {
                Err(Error::NotAcquired { .. }) if tokio::time::Instant::now() + Duration::from_secs(1) <= until => {
                    tokio::time::sleep_until(started + Duration::from_secs(1)).await;
                }
                result => return result,
            }
        }
    }

    /// Renews a lease this caller holds.
    ///
    /// # Errors
    /// [`Error::NotAcquired`] when the holder and token no longer hold it: stop.
    pub async fn renew(&self, namespace: &str, name: &str, request: &RenewRequest) -> Result<Grant, Error> {
        let path = lease_path(namespace, name, "renew")?;
        let response = self.send(Method::POST, &path, Some(to_json(request)?), self.timeout).await?;
        grant(json(expect_status(response, StatusCode::OK).await?)?)
    }

    /// Releases a lease; succeeds also when it was already released or expired.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another holder or token holds it.
    pub async fn release(&self, namespace: &str, name: &str, request: &ReleaseRequest) -> Result<(), Error> {
        let path = lease_path(namespace, name, "release")?;
        let response = self.send(Method::POST, &path, Some(to_json(request)?), self.timeout).await?;
        expect_status(response, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// One lease.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist or belongs to another tenant.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<LeaseView, Error> {
        let path = lease_path(namespace, name, "")?;
        let response = self.send(Method::GET, &path, None, self.timeout).await?;
        json(expect_status(response, StatusCode::OK).await?)
    }

    /// The leases of one namespace, sorted by name.
    pub async fn list(&self, namespace: &str) -> Result<Vec<LeaseView>, Error> {
        check_namespace(namespace)?;
        let path = format!("v1alpha1/namespaces/{namespace}/leases");
        let response = self.send(Method::GET, &path, None, self.timeout).await?;
        Ok(json::<LeaseList>(expect_status(response, StatusCode::OK).await?)?.items)
    }

    /// The leases of every namespace this key's tenant may use.
    pub async fn list_all(&self) -> Result<Vec<LeaseView>, Error> {
        let response = self.send(Method::GET, "v1alpha1/leases", None, self.timeout).await?;
        Ok(json::<LeaseList>(expect_status(response, StatusCode::OK).await?)?.items)
    }

    /// Watches one lease: the stream yields its current state, then one view
    /// per change.
    ///
    /// The stream ends when the server ends it: the lease was deleted, or the
    /// server is shutting down.
    ///
    /// # Errors
    /// The call fails as [`Self::get`] does when the watch cannot start. The
    /// stream ends after yielding an [`Error::Transport`] when the connection
    /// breaks or stays silent for [`WATCH_IDLE_TIMEOUT`]; start a new watch
    /// to go on.
    pub async fn watch(&self, namespace: &str, name: &str) -> Result<LeaseStream, Error> {
        let path = lease_path(namespace, name, "watch")?;
        let stream = self.event_stream(&path, |event| {
            (event.event == "lease").then(|| {
                serde_json::from_str::<LeaseView>(&event.data).map_err(|e| Error::Decode(format!("watch event: {e}")))
            })
        });
        Ok(Box::pin(stream.await?))
    }

    /// Watches the leases of every namespace this key's tenant may use
    /// (`GET /v1alpha1/leases?watch=1`): one [`LeaseEvent::Added`] per current
    /// lease, then [`LeaseEvent::InitialEventsEnd`], then every change.
    ///
    /// # Errors
    /// As [`Self::watch`]: the call fails when the watch cannot start (for
    /// example [`Error::Unauthorized`]); the stream ends after an
    /// [`Error::Transport`] when the connection breaks or stays silent for
    /// [`WATCH_IDLE_TIMEOUT`], and ends without error when the server shuts
    /// down. Start a new watch to go on: it restates the current list.
    pub async fn watch_all(&self) -> Result<LeaseEventStream, Error> {
        Ok(Box::pin(self.event_stream("v1alpha1/leases?watch=1", decode_lease_event).await?))
    }

    /// [`Self::watch_all`] for the leases of one namespace.
    pub async fn watch_namespace(&self, namespace: &str) -> Result<LeaseEventStream, Error> {
        check_namespace(namespace)?;
        let path = format!("v1alpha1/namespaces/{namespace}/leases?watch=1");
        Ok(Box::pin(self.event_stream(&path, decode_lease_event).await?))
    }

    /// Opens the event stream at `path`; `decode` turns each SSE event into an
    /// item, or `None` to skip it. The stream ends after the first error.
    async fn event_stream<T: Send + 'static>(
        &self,
        path: &str,
        decode: fn(SseEvent) -> Option<Result<T, Error>>,
    ) -> Result<impl futures::Stream<Item = Result<T, Error>> + Send + 'static, Error> {
        let request = self.request(Method::GET, path)?.header(reqwest::header::ACCEPT, "text/event-stream");
        let response = request.send().await.map_err(|e| Error::request(&self.describe(path), &self.trusted, e))?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(key) = &self.key
        {
            // A rotated key file is read now; a watch started again sends the new key.
            key.reread_after_refusal();
        }
        let response = check_status(response, StatusCode::OK).await?;
        let context = self.describe(path);
        let state = (response, SseParser::new(), std::collections::VecDeque::<T>::new(), false);
        Ok(futures::stream::unfold(state, move |(mut response, mut parser, mut ready, done)| {
            let context = context.clone();
            async move {
                loop {
                    if let Some(item) = ready.pop_front() {
                        return Some((Ok(item), (response, parser, ready, done)));
                    }
                    if done {
                        return None;
                    }
                    let chunk = match tokio::time::timeout(WATCH_IDLE_TIMEOUT, response.chunk()).await {
                        Err(_) => Err(Error::Transport {
                            message: format!("{context}: no data or keep-alive for {}s", WATCH_IDLE_TIMEOUT.as_secs()),
                            source: None,
                        }),
                        Ok(Err(e)) => Err(Error::transport(&context, e)),
                        // The server ends a watch when the lease is deleted or it shuts down.
                        Ok(Ok(None)) => return None,
                        Ok(Ok(Some(chunk))) => Ok(chunk),
                    };
                    match chunk {
                        Err(e) => return Some((Err(e), (response, parser, ready, true))),
                        Ok(chunk) => {
                            for item in parser.push(&chunk).into_iter().filter_map(decode) {
                                match item {
                                    Ok(item) => ready.push_back(item),
                                    Err(e) => return Some((Err(e), (response, parser, ready, true))),
                                }
                            }
                        }
                    }
                }
            }
        }))
    }

    fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder, Error> {
        let url = self.base.join(path).map_err(|e| Error::InvalidRequest(format!("URL path {path:?}: {e}")))?;
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.current());
        }
        Ok(request)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, Error> {
        let mut retried = false;
        loop {
            let mut request = self.request(method.clone(), path)?.timeout(timeout);
            if let Some(body) = &body {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            let response = request.send().await.map_err(|e| Error::request(&self.describe(path), &self.trusted, e))?;
            // A 401 changed nothing on the server (authentication comes first), so
            // when the key file has been rotated since the last look, the request
            // goes once more with the new key.
            let refused = response.status() == StatusCode::UNAUTHORIZED;
            if !refused || retried || !self.key.as_ref().is_some_and(BearerKey::reread_after_refusal) {
                return Ok(response);
            }
            retried = true;
        }
    }

    fn describe(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn http_client(tls: &rustls::ClientConfig, connect_timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

fn check_namespace(namespace: &str) -> Result<(), Error> {
    berth_api::wire::check_names(namespace, "x").map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// `v1alpha1/namespaces/{ns}/leases/{name}[/{verb}]`, after checking that both
/// names are what docs/api.md allows (so nothing else can end up in the path).
fn lease_path(namespace: &str, name: &str, verb: &str) -> Result<String, Error> {
    berth_api::wire::check_names(namespace, name).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let path = format!("v1alpha1/namespaces/{namespace}/leases/{name}");
    Ok(if verb.is_empty() { path } else { format!("{path}/{verb}") })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// The response when it has `expected` status, else the error it maps to.
async fn check_status(response: reqwest::Response, expected: StatusCode) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status == expected {
        return Ok(response);
    }
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (request_id, retry_after) = (header("x-request-id"), header("retry-after"));
    let context = format!("reading the answer to {}", response.url().path());
    let body = response.bytes().await.map_err(|e| Error::transport(&context, e))?;
    Err(Error::from_status(status.as_u16(), &body, request_id, retry_after.as_deref()))
}

async fn expect_status(response: reqwest::Response, expected: StatusCode) -> Result<Vec<u8>, Error> {
    let response = check_status(response, expected).await?;
    let context = format!("reading the answer to {}", response.url().path());
    Ok(response.bytes().await.map_err(|e| Error::transport(&context, e))?.to_vec())
}

fn json<T: DeserializeOwned>(body: Vec<u8>) -> Result<T, Error> {
    serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
}

fn grant(response: AcquireResponse) -> Result<Grant, Error> {
    if !response.acquired {
        return Err(Error::NotAcquired { current: response });
    }
    let fencing_token =
        response.fencing_token.ok_or_else(|| Error::Decode("acquired answer without fencingToken".to_owned()))?;
    Ok(Grant {
        holder: response.holder,
        fencing_token,
        expires_at: response.expires_at,
        acquired_at: response.acquired_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_refuses_plain_http_and_empty_keys() {
        let err = Client::builder("http://127.0.0.1:8080").build().unwrap_err();
        assert!(err.to_string().contains("must start with https://"), "{err}");
        let err = Client::builder("https://127.0.0.1:8443").api_key(" \n").build().unwrap_err();
        assert!(err.to_string().contains("the API key is empty"), "{err}");
    }

    #[test]
    fn key_file_is_trimmed_and_never_shown() {
        let path = std::env::temp_dir().join(format!("berth-client-key-{}", std::process::id()));
        std::fs::write(&path, "s3cret-key\n").unwrap();
        let client = Client::builder("https://127.0.0.1:8443").api_key_file(&path).build().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(client.key.as_ref().map(BearerKey::current).as_deref(), Some("s3cret-key"));
        assert!(!format!("{client:?}").contains("s3cret"));
    }

    #[test]
    fn base_url_keeps_a_path_prefix() {
        let client = Client::builder("https://berth.example.com/prefix").build().unwrap();
        let url = client.base.join(&lease_path("ns", "a", "acquire").unwrap()).unwrap();
        assert_eq!(url.as_str(), "https://berth.example.com/prefix/v1alpha1/namespaces/ns/leases/a/acquire");
    }

    #[test]
    fn names_that_could_escape_the_path_are_refused_before_sending() {
        for (ns, name) in [("ns", "../../x"), ("ns/..", "a"), ("ns", "a?b"), ("ns", "")] {
            let err = lease_path(ns, name, "").unwrap_err();
            assert_eq!(err.metric_label(), "invalid_request", "{ns} {name}");
        }
    }

    #[test]
    fn collection_watch_events_decode_by_name_and_unknown_names_are_skipped() {
        let event = |name: &str, data: &str| SseEvent { event: name.into(), data: data.into() };
        let view = r#"{"namespace":"ns","name":"a","semantics":"at-most-once","state":"held","holders":[],
            "fencingToken":3,"transitions":3,"ttlSeconds":30,"heartbeatIntervalSeconds":10}"#;
        let decoded = |name| decode_lease_event(event(name, view)).unwrap().unwrap();
        assert!(matches!(decoded("added"), LeaseEvent::Added(v) if v.fencing_token == 3));
        assert!(matches!(decoded("modified"), LeaseEvent::Modified(v) if v.name == "a"));
        assert!(matches!(decoded("deleted"), LeaseEvent::Deleted(_)));
        let end = decode_lease_event(event("bookmark", r#"{"initialEventsEnd":true}"#)).unwrap().unwrap();
        assert_eq!(end, LeaseEvent::InitialEventsEnd);
        assert!(decode_lease_event(event("lease", view)).is_none(), "an unknown name is skipped");
        let err = decode_lease_event(event("added", "{")).unwrap().unwrap_err();
        assert_eq!(err.metric_label(), "decode");
    }

    #[test]
    fn refused_answer_becomes_not_acquired() {
        let refused = AcquireResponse { acquired: false, holder: "other".into(), ..Default::default() };
        assert!(matches!(grant(refused), Err(Error::NotAcquired { current }) if current.holder == "other"));
        let granted =
            AcquireResponse { acquired: true, holder: "me".into(), fencing_token: Some(3), ..Default::default() };
        assert_eq!(grant(granted).unwrap().fencing_token, 3);
    }
}
