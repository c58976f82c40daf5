//! The HTTP surface: the routers, and the checks of docs/api.md in their order.
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
use berth_api::serving::METRICS_CONTENT_TYPE;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::metrics::Metrics;

pub use extract::parse_body;
pub use middleware::{REQUEST_ID, request_id};
pub use sse::KEEP_ALIVE;
pub use state::App;

/// The API router. Tests drive it with `oneshot`; [`crate::serve`] serves it over TLS.
pub fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
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
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    layered(routes, app)
}

/// The layers every API response passes through.
fn layered(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        // Outermost last: `observe` gives every response its request id, logs
        // and measures it, and turns any 500 into the JSON body of docs/api.md; inside
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
                ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], metrics.encode())
            }),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::KeySet;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_request_id_and_no_detail() {
        // Nothing listens on port 1: the app is never used past the layers.
        let client = kube::Client::try_from(kube::Config::new("https://127.0.0.1:1".parse().unwrap())).unwrap();
        let keys = Arc::new(KeySet::parse("").unwrap());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let app = App::start(client, &[], keys, Arc::default(), shutdown, Default::default());
        async fn boom() -> &'static str {
            panic!("secret detail")
        }
        let routes = Router::new().route("/boom", get(boom));
        let request = Request::get("/boom").header(REQUEST_ID, "req-500").body(Body::empty()).unwrap();
        let response = layered(routes, app).oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[REQUEST_ID], "req-500");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"error": "internal error", "requestId": "req-500"}));
    }
}
