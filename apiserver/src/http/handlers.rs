//! The handlers of the probe, document and lease routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::rules::{self, Outcome};
use berth_api::wire::{
    AcquireRequest, AcquireResponse, FieldError, LeaseList, LeaseView, ReleaseRequest, RenewRequest,
};
use serde::de::DeserializeOwned;

use crate::auth::Tenant;
use crate::error::{ApiError, json_response};
use crate::leases::{self, CreateSpec, Write, outcome_label, visible_to};

use super::App;
use super::extract::{LeasePath, NamespacePath, read_json, wants_watch};
use super::sse;

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.ready() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

pub(super) async fn openapi() -> Response {
    json_response(StatusCode::OK, &crate::openapi::document())
}

/// A POST body that names a holder and has the field checks of docs/api.md.
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

/// Steps 1 to 5 of the checks in docs/api.md for a POST, in that order.
async fn checked<R: HolderRequest>(
    app: &App,
    path: &LeasePath,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Tenant, R), ApiError> {
    let tenant = app.authenticate(headers).await?;
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

/// A write of `request` to the lease at `path`, creating nothing.
fn write_to<'a>(path: &'a LeasePath, tenant: &'a Tenant, request: rules::Request<'a>) -> Write<'a> {
    Write { namespace: &path.namespace, name: &path.name, tenant, request, create: None }
}

fn record_outcome(app: &App, operation: &'static str, outcome: &Outcome) {
    let label = outcome_label(outcome);
    tracing::Span::current().record("outcome", label);
    app.metrics.outcome(operation, label);
}

pub(super) async fn acquire(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<AcquireRequest>(&app, &path, &headers, body).await?;
    let acquire = rules::Request::Acquire { holder: &request.holder, ttl_seconds: request.ttl_seconds };
    let write = Write {
        create: Some(CreateSpec {
            ttl_seconds: request.ttl_seconds,
            semantics: request.semantics,
            max_holders: request.max_holders,
        }),
        ..write_to(&path, &tenant, acquire)
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

pub(super) async fn renew(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<RenewRequest>(&app, &path, &headers, body).await?;
    let renew = rules::Request::Renew {
        holder: &request.holder,
        fencing_token: request.fencing_token,
        ttl_seconds: request.ttl_seconds,
    };
    let outcome = app.leases.write(&write_to(&path, &tenant, renew)).await?;
    record_outcome(&app, "renew", &outcome);
    Ok(json_response(StatusCode::OK, &acquire_answer(outcome)?))
}

pub(super) async fn release(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, request) = checked::<ReleaseRequest>(&app, &path, &headers, body).await?;
    let release = rules::Request::Release { holder: &request.holder, fencing_token: request.fencing_token };
    let outcome = app.leases.write(&write_to(&path, &tenant, release)).await?;
    record_outcome(&app, "release", &outcome);
    match outcome {
        Outcome::Released | Outcome::AlreadyReleased => Ok(StatusCode::NO_CONTENT.into_response()),
        Outcome::ReleaseConflict => Err(ApiError::ReleaseConflict),
        other => Err(ApiError::Internal(leases::Error::UnexpectedOutcome(Box::new(other)))),
    }
}

pub(super) async fn get_lease(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.lease_reader(&headers, &path).await?;
    let lease = app.visible_lease(&tenant, &path.namespace, &path.name)?;
    Ok(json_response(StatusCode::OK, &LeaseView::from_lease(&lease)))
}

/// The leases of one namespace, or with `watch=1` a collection watch of them.
pub(super) async fn list_namespace(
    State(app): State<Arc<App>>,
    path: NamespacePath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers).await?;
    let watch = wants_watch(query.as_deref())?;
    app.authorize(&tenant, &path.namespace, None)?;
    path.check(&app)?;
    app.synced()?;
    if watch {
        return Ok(sse::watch_collection(app, tenant, Some(path.namespace)));
    }
    let items = app.cache.list(|l| l.metadata.namespace.as_deref() == Some(&path.namespace) && visible_to(l, &tenant));
    Ok(json_response(StatusCode::OK, &LeaseList { items: items.iter().map(|l| LeaseView::from_lease(l)).collect() }))
}

/// The leases of every namespace the tenant may use, or with `watch=1` a collection watch of them.
pub(super) async fn list_all(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers).await?;
    let watch = wants_watch(query.as_deref())?;
    app.synced()?;
    if watch {
        return Ok(sse::watch_collection(app, tenant, None));
    }
    let items = app.cache.list(|l| {
        l.metadata.namespace.as_deref().is_some_and(|ns| tenant.may_use_namespace(ns)) && visible_to(l, &tenant)
    });
    Ok(json_response(StatusCode::OK, &LeaseList { items: items.iter().map(|l| LeaseView::from_lease(l)).collect() }))
}
