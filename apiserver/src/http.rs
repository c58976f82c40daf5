//! The HTTP surface: routes, the checks of API.md in their order, and the
//! layers every response passes through.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::BerthLease;
use berth_api::rules::{self, Outcome};
use berth_api::wire::{
    self, AcquireRequest, AcquireResponse, ErrorBody, FieldError, LeaseList, LeaseView, MAX_BODY_BYTES, NameError,
    ReleaseRequest, RenewRequest,
};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::auth::{Authenticator, Resolver, Tenant};
use crate::cache::LeaseCache;
use crate::collection_watch;
use crate::error::{ApiError, json_response};
use crate::leases::{self, CreateSpec, Leases, Write, WriteLimit, outcome_label, visible_to};
use crate::metrics::{Metrics, RequestLabels};

/// SSE keep-alive period (API.md: a comment line every 15 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The response header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Everything the handlers share.
pub struct App {
    pub leases: Leases,
    pub cache: Arc<LeaseCache>,
    pub authenticator: Arc<dyn Authenticator>,
    pub resolver: Arc<dyn Resolver>,
    pub metrics: Arc<Metrics>,
    /// Turns `true` when shutdown starts: readiness fails, waits and watches end.
    pub shutdown: watch::Receiver<bool>,
    /// Period of the SSE keep-alive comment; [`KEEP_ALIVE`] unless a test shortens it.
    pub keep_alive: Duration,
}

impl App {
    /// Starts the informer cache for `namespaces` (empty: all) on the current
    /// runtime and wires the handlers' state; `write_limit` bounds the
    /// concurrent writes to kube-apiserver.
    ///
    /// # Caveats
    /// Keep the sender of `shutdown` alive: once it is dropped, waiting
    /// acquires and SSE watches end at once, as on shutdown.
    pub fn start(
        client: kube::Client,
        namespaces: &[String],
        authenticator: Arc<dyn Authenticator>,
        resolver: Arc<dyn Resolver>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        write_limit: WriteLimit,
    ) -> Arc<Self> {
        let cache = LeaseCache::start(client.clone(), namespaces, metrics.clone());
        let leases = Leases::new(client, cache.clone(), metrics.clone(), write_limit);
        Arc::new(Self { leases, cache, authenticator, resolver, metrics, shutdown, keep_alive: KEEP_ALIVE })
    }

    /// Step 1 of API.md's checks.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Tenant, ApiError> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::MissingAuth)?;
        let tenant = self.authenticator.authenticate(key).ok_or(ApiError::UnknownKey)?;
        tracing::Span::current().record("tenant", tenant.name.as_str());
        Ok(tenant)
    }

    /// Step 4: the namespace, then the holder.
    fn authorize(&self, tenant: &Tenant, namespace: &str, holder: Option<&str>) -> Result<(), ApiError> {
        if !self.resolver.may_use_namespace(tenant, namespace) {
            return Err(ApiError::NamespaceForbidden);
        }
        if holder.is_some_and(|h| !self.resolver.may_act_as(tenant, h)) {
            return Err(ApiError::HolderForbidden);
        }
        Ok(())
    }

    /// After the names check: whether this apiserver watches the namespace.
    fn served(&self, namespace: &str) -> Result<(), ApiError> {
        if self.cache.serves(namespace) { Ok(()) } else { Err(ApiError::NamespaceNotServed) }
    }

    /// The lease as `tenant` may see it: absent and foreign both answer 404.
    fn visible_lease(&self, tenant: &Tenant, namespace: &str, name: &str) -> Result<Arc<BerthLease>, ApiError> {
        self.cache.get(namespace, name).filter(|l| visible_to(l, tenant)).ok_or(ApiError::LeaseNotFound)
    }

    fn ready(&self) -> bool {
        self.cache.is_ready() && !*self.shutdown.borrow()
    }
}

/// The API router. Tests drive it with `oneshot`; [`crate::serve`] serves it over TLS.
pub fn router(app: Arc<App>) -> Router {
    const LEASE: &str = "/v1alpha1/namespaces/{namespace}/leases/{name}";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/v1alpha1/leases", get(list_all))
        .route("/v1alpha1/namespaces/{namespace}/leases", get(list_namespace))
        .route(LEASE, get(get_lease))
        .route(&format!("{LEASE}/watch"), get(watch_lease))
        .route(&format!("{LEASE}/acquire"), post(acquire))
        .route(&format!("{LEASE}/renew"), post(renew))
        .route(&format!("{LEASE}/release"), post(release))
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Outermost last: `observe` gives every response its request id, logs
        // and measures it, and turns any 500 into API.md's JSON body; inside
        // it, a panicking handler becomes a plain 500 for `observe` to dress.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The plain-HTTP health-probe router: `/healthz` and `/readyz`.
pub fn probe_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(app)
}

/// The plain-HTTP metrics router: `/metrics`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], metrics.encode())
            }),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(metrics)
}

fn panic_response(payload: Box<dyn std::any::Any + Send>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(%detail, "handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    // Known methods only, so odd requests cannot grow the metric's label set.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        %route,
        tenant = tracing::field::Empty,
        lease = tracing::field::Empty,
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let body = ErrorBody { error: "internal error".to_owned(), request_id: Some(id.clone()) };
        response = json_response(status, &body);
    }
    response.headers_mut().insert(REQUEST_ID, HeaderValue::from_str(&id).expect("request ids are ASCII"));
    let elapsed = started.elapsed();
    app.metrics
        .requests
        .get_or_create(&RequestLabels { route, method, status: status.as_u16() })
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request"));
    response
}

/// The inbound `X-Request-Id` when it matches `[A-Za-z0-9_-]{1,64}`, else 32 random hex digits.
pub fn request_id(headers: &HeaderMap) -> String {
    let valid = |s: &&str| {
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(valid) {
        Some(id) => id.to_owned(),
        None => format!("{:032x}", fastrand::u128(..)),
    }
}

/// The `{namespace}` and `{name}` of a lease route, percent-decoded. Bytes
/// that are not UTF-8 decode to U+FFFD, which the names check refuses in its
/// own step (5) rather than before authentication.
struct LeasePath {
    namespace: String,
    name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for LeasePath {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // /v1alpha1/namespaces/{namespace}/leases[/{name}[/verb]]
        let mut segments = parts.uri.path().split('/').skip(3).step_by(2).map(percent_decode);
        let namespace = segments.next().unwrap_or_default();
        let name = segments.next().unwrap_or_default();
        Ok(Self { namespace, name })
    }
}

impl LeasePath {
    /// Step 5, then whether this apiserver serves the namespace.
    fn check(&self, app: &App) -> Result<(), ApiError> {
        wire::check_names(&self.namespace, &self.name)?;
        app.served(&self.namespace)?;
        tracing::Span::current().record("lease", format!("{}/{}", self.namespace, self.name));
        Ok(())
    }

    fn check_namespace(&self, app: &App) -> Result<(), ApiError> {
        if !wire::is_dns_label(&self.namespace) {
            return Err(NameError::Namespace.into());
        }
        app.served(&self.namespace)
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Step 2: at most [`MAX_BODY_BYTES`], one JSON object, known fields only.
/// The body is read only after authentication, and never past the limit.
async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    let mut bytes = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::BodyTooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    parse_body(&bytes)
}

/// The JSON part of step 2, on a body already within the size limit.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
    match values.next() {
        None => Err(ApiError::InvalidJson("EOF".to_owned())),
        Some(Err(e)) => Err(ApiError::InvalidJson(e.to_string())),
        Some(Ok(value)) if !value.is_object() => Err(ApiError::NotOneObject),
        Some(Ok(_)) => {
            let end = values.byte_offset();
            if !bytes[end..].iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::NotOneObject);
            }
            // Decode the object itself (not the Value) so duplicate and
            // unknown fields are reported by serde.
            serde_json::from_slice(&bytes[..end]).map_err(|e| ApiError::InvalidJson(e.to_string()))
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.ready() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

async fn openapi() -> Response {
    json_response(StatusCode::OK, &crate::openapi::document())
}

/// A POST body that names a holder and has API.md's field checks.
trait HolderRequest: DeserializeOwned {
    fn check_fields(&self) -> Result<(), FieldError>;
    fn holder(&self) -> &str;
}

macro_rules! holder_request {
    ($($t:ty),*) => {$(
        impl HolderRequest for $t {
            fn check_fields(&self) -> Result<(), FieldError> {
                self.check()
            }
            fn holder(&self) -> &str {
                &self.holder
            }
        }
    )*};
}
holder_request!(AcquireRequest, RenewRequest, ReleaseRequest);

/// Steps 1 to 5 of API.md's checks for a POST, in that order.
async fn checked<R: HolderRequest>(
    app: &App,
    path: &LeasePath,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Tenant, R), ApiError> {
    let tenant = app.authenticate(headers)?;
    let request: R = read_json(headers, body).await?;
    request.check_fields()?;
    app.authorize(&tenant, &path.namespace, Some(request.holder()))?;
    path.check(app)?;
    Ok((tenant, request))
}

fn acquire_answer(outcome: Outcome) -> Result<AcquireResponse, ApiError> {
    match outcome {
        Outcome::Granted(holder) | Outcome::Renewed(holder) => Ok(AcquireResponse::granted(&holder)),
        Outcome::NotAcquired { current, .. } => Ok(AcquireResponse::not_acquired(current.as_ref())),
        other => Err(ApiError::Internal(leases::Error::UnexpectedOutcome(Box::new(other)))),
    }
}

fn record_outcome(app: &App, operation: &'static str, outcome: &Outcome) {
    let label = outcome_label(outcome);
    tracing::Span::current().record("outcome", label);
    app.metrics.outcome(operation, label);
}

async fn acquire(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<AcquireRequest>(&app, &path, &headers, body).await?;
    let write = Write {
        namespace: &path.namespace,
        name: &path.name,
        tenant: &tenant,
        request: rules::Request::Acquire { holder: &request.holder, ttl_seconds: request.ttl_seconds },
        create: Some(CreateSpec {
            ttl_seconds: request.ttl_seconds,
            semantics: request.semantics,
            max_holders: request.max_holders,
        }),
    };
    let outcome = match request.wait_seconds {
        Some(seconds) => {
            let wait = Duration::from_secs(seconds.unsigned_abs().into());
            app.leases.acquire_waiting(&write, wait, app.shutdown.clone()).await?
        }
        None => app.leases.write(&write).await?,
    };
    record_outcome(&app, "acquire", &outcome);
    Ok(json_response(StatusCode::OK, &acquire_answer(outcome)?))
}

async fn renew(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<RenewRequest>(&app, &path, &headers, body).await?;
    let write = Write {
        namespace: &path.namespace,
        name: &path.name,
        tenant: &tenant,
        request: rules::Request::Renew {
            holder: &request.holder,
            fencing_token: request.fencing_token,
            ttl_seconds: request.ttl_seconds,
        },
        create: None,
    };
    let outcome = app.leases.write(&write).await?;
    record_outcome(&app, "renew", &outcome);
    Ok(json_response(StatusCode::OK, &acquire_answer(outcome)?))
}

async fn release(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<ReleaseRequest>(&app, &path, &headers, body).await?;
    let write = Write {
        namespace: &path.namespace,
        name: &path.name,
        tenant: &tenant,
        request: rules::Request::Release { holder: &request.holder, fencing_token: request.fencing_token },
        create: None,
    };
    let outcome = app.leases.write(&write).await?;
    record_outcome(&app, "release", &outcome);
    match outcome {
        Outcome::Released | Outcome::AlreadyReleased => Ok(StatusCode::NO_CONTENT.into_response()),
        Outcome::ReleaseConflict => Err(ApiError::ReleaseConflict),
        other => Err(ApiError::Internal(leases::Error::UnexpectedOutcome(Box::new(other)))),
    }
}

async fn get_lease(State(app): State<Arc<App>>, path: LeasePath, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers)?;
    app.authorize(&tenant, &path.namespace, None)?;
    path.check(&app)?;
    let lease = app.visible_lease(&tenant, &path.namespace, &path.name)?;
    Ok(json_response(StatusCode::OK, &LeaseView::from_lease(&lease)))
}

async fn list_namespace(
    State(app): State<Arc<App>>,
    path: LeasePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers)?;
    let watch = collection_watch::wants_watch(query.as_deref())?;
    app.authorize(&tenant, &path.namespace, None)?;
    path.check_namespace(&app)?;
    if watch {
        return Ok(collection_watch::respond(app, tenant, Some(path.namespace)));
    }
    let items = app.cache.list(|l| l.metadata.namespace.as_deref() == Some(&path.namespace) && visible_to(l, &tenant));
    Ok(json_response(StatusCode::OK, &LeaseList { items: items.iter().map(|l| LeaseView::from_lease(l)).collect() }))
}

async fn list_all(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers)?;
    if collection_watch::wants_watch(query.as_deref())? {
        return Ok(collection_watch::respond(app, tenant, None));
    }
    let items = app.cache.list(|l| {
        l.metadata.namespace.as_deref().is_some_and(|ns| app.resolver.may_use_namespace(&tenant, ns))
            && visible_to(l, &tenant)
    });
    Ok(json_response(StatusCode::OK, &LeaseList { items: items.iter().map(|l| LeaseView::from_lease(l)).collect() }))
}

async fn watch_lease(State(app): State<Arc<App>>, path: LeasePath, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers)?;
    app.authorize(&tenant, &path.namespace, None)?;
    path.check(&app)?;
    // Subscribe before the first read, so no change falls in between.
    let changes = app.cache.subscribe();
    let lease = app.visible_lease(&tenant, &path.namespace, &path.name)?;
    let keep_alive = KeepAlive::new().interval(app.keep_alive);
    let stream = lease_events(app, path, lease, changes);
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// The current state, then one event per new resourceVersion. Ends when the
/// lease is deleted or the server shuts down.
fn lease_events(
    app: Arc<App>,
    path: LeasePath,
    first: Arc<BerthLease>,
    changes: watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Watch {
        app: Arc<App>,
        path: LeasePath,
        changes: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        last: Option<String>,
    }
    let event = |lease: &BerthLease| {
        Event::default().event("lease").json_data(LeaseView::from_lease(lease)).expect("the lease view serializes")
    };
    let initial = event(&first);
    let shutdown = app.shutdown.clone();
    let state = Watch { app, path, changes, shutdown, last: first.resource_version() };
    let rest = futures::stream::unfold(state, move |mut w| async move {
        loop {
            tokio::select! {
                changed = w.changes.changed() => changed.ok()?,
                _ = w.shutdown.wait_for(|stop| *stop) => return None,
            }
            let lease = w.app.cache.get(&w.path.namespace, &w.path.name)?;
            if lease.resource_version() != w.last {
                w.last = lease.resource_version();
                return Some((Ok(event(&lease)), w));
            }
        }
    });
    futures::stream::once(async move { Ok(initial) }).chain(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::wire::RenewRequest;

    #[test]
    fn body_checks_tell_bad_json_from_not_one_object() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid json body: EOF"),
            ("{", "invalid json body: EOF while parsing an object at line 1 column 1"),
            ("[]", "request body must contain one JSON object"),
            ("null", "request body must contain one JSON object"),
            ("{} {}", "request body must contain one JSON object"),
            ("{}x", "request body must contain one JSON object"),
            (r#"{"holder":"a","extra":1}"#, "invalid json body: unknown field `extra`"),
            (r#"{"holder":"a","holder":"b"}"#, "invalid json body: duplicate field `holder`"),
            (r#"{"fencingToken":"1"}"#, "invalid json body: invalid type: string \"1\", expected i32"),
        ];
        for (body, message) in cases {
            let err = parse_body::<RenewRequest>(body.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with(message), "{body:?}: {err}");
        }
        let ok: RenewRequest = parse_body(b" {\"holder\":\"a\"} \n").unwrap();
        assert_eq!(ok.holder, "a");
    }

    #[test]
    fn request_id_is_echoed_only_when_well_formed() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc_DEF-123"));
        assert_eq!(request_id(&headers), "abc_DEF-123");
        for bad in ["has space", "semi;colon", &"x".repeat(65), ""] {
            headers.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn path_segments_are_percent_decoded_lossily() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
