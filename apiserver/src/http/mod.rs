//! The HTTP surface: the routers, and the checks of API.md in their order.
//!
//! [`state`] holds what the handlers share and the checks that need it,
//! [`extract`] reads the path and the body, [`handlers`] answers the lease
//! routes, [`sse`] streams watches, and [`middleware`] is the layer every
//! response passes through.

mod extract;
mod handlers;
mod middleware;
mod sse;
mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::metrics::Metrics;

pub use extract::parse_body;
pub use middleware::{REQUEST_ID, request_id};
pub use sse::KEEP_ALIVE;
pub use state::App;

/// The API router. Tests drive it with `oneshot`; [`crate::serve`] serves it over TLS.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/openapi.json", get(handlers::openapi))
        .route("/v1alpha1/leases", get(handlers::list_all))
        .route(extract::NAMESPACE_ROUTE, get(handlers::list_namespace))
        .route(extract::LEASE_ROUTE, get(handlers::get_lease))
        .route(&format!("{}/watch", extract::LEASE_ROUTE), get(sse::watch_lease))
        .route(&format!("{}/acquire", extract::LEASE_ROUTE), post(handlers::acquire))
        .route(&format!("{}/renew", extract::LEASE_ROUTE), post(handlers::renew))
        .route(&format!("{}/release", extract::LEASE_ROUTE), post(handlers::release))
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Outermost last: `observe` gives every response its request id, logs
        // and measures it, and turns any 500 into API.md's JSON body; inside
        // it, a panicking handler becomes a plain 500 for `observe` to dress.
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn_with_state(app.clone(), middleware::observe))
        .with_state(app)
}

/// The plain-HTTP health-probe router: `/healthz` and `/readyz`.
pub fn probe_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
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
