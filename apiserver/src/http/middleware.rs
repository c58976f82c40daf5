//! The layers every API response passes through: the request id, the log
//! line and the duration metric, and panics turned into a 500.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::wire::ErrorBody;
use tracing::Instrument;

use crate::error::json_response;
use crate::metrics::RequestLabels;

use super::App;

/// The response header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

pub(super) fn panic_response(payload: Box<dyn std::any::Any + Send>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(%detail, "handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

pub(super) async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
