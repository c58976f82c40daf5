//! The metrics port (`GET /metrics`) and the probe port (`GET /healthz`, `GET /readyz`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use berth_api::serving::{BindAddress, METRICS_CONTENT_TYPE};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Readiness: set once this replica can do its part (a standby that reaches
/// kube-apiserver, or a leader that can list the BerthLeases it watches).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(serve_metrics)).with_state(metrics)
}

/// `GET /healthz` (the process serves) and `GET /readyz` (see [`Health`]).
pub fn probe_router(health: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(ready)).with_state(health)
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], metrics.encode())
}

async fn ready(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.is_ready() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

/// Parses a bind address as controller-runtime does: `HOST:PORT`, `:PORT`
/// (every interface), or `0` (disabled, `None`).
///
/// # Errors
/// [`Error::BindAddress`] for anything else.
pub fn parse_bind_address(addr: &str) -> Result<Option<SocketAddr>> {
    addr.parse::<BindAddress>().map(|b| b.0).map_err(|_| Error::BindAddress { addr: addr.to_owned() })
}

/// Binds `addr` and serves `router` until `shutdown` completes.
///
/// # Errors
/// [`Error::Serve`] when the address cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Serve { addr, source })?;
    tracing::info!(%addr, "serving HTTP");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(%addr, %error, "HTTP server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_follow_controller_runtime() {
        assert_eq!(parse_bind_address(":8080").unwrap(), Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(parse_bind_address("127.0.0.1:9").unwrap(), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(parse_bind_address("0").unwrap(), None);
        assert!(parse_bind_address("localhost").is_err());
    }
}
