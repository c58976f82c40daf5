//! The one error type of the HTTP layer, and how each error answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::wire::{ErrorBody, FieldError, NameError};

/// Everything a request can fail with. `Display` is the exact message of
/// docs/api.md, except for [`ApiError::Internal`], whose detail goes only to the log.
/// The HTTP boundary: every other error type becomes one of these to be answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed Authorization header")]
    MissingAuth,
    #[error("unauthorized")]
    UnknownKey,
    /// An authenticator could not decide (kube-apiserver's TokenReview or an
    /// issuer's keys unreachable): retry, nothing is known about the credential.
    #[error("authentication unavailable, retry later")]
    AuthUnavailable(#[from] crate::auth::AuthError),
    #[error("request body must be at most 4096 bytes")]
    BodyTooLarge,
    #[error("request body must contain one JSON object")]
    NotOneObject,
    #[error("invalid json body: {0}")]
    InvalidJson(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("not authorized for this namespace")]
    NamespaceForbidden,
    #[error("holder not authorized for this identity")]
    HolderForbidden,
    /// The lease exists but belongs to another tenant (writes; reads answer 404).
    #[error("lease belongs to another tenant")]
    ForeignLease,
    /// The apiserver was started with `--namespace` and this one is not among them.
    #[error("namespace is not served by this apiserver")]
    NamespaceNotServed,
    #[error(transparent)]
    Name(#[from] NameError),
    /// A query parameter with a value the route does not accept.
    #[error("{0}")]
    InvalidQuery(&'static str),
    #[error("lease not found")]
    LeaseNotFound,
    #[error("namespace not found")]
    NamespaceNotFound,
    #[error("lease held by another identity or token")]
    ReleaseConflict,
    #[error("not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Every retry of a conditional write met a conflict.
    #[error("too many concurrent writes to this lease, retry")]
    Contended,
    /// The queue for a write slot to kube-apiserver was full (an extension
    /// of docs/api.md): nothing was written; retry after this many seconds.
    #[error("overloaded, retry later")]
    Overloaded { retry_after_seconds: u32 },
    /// A read before the lease cache has first synced: the cache cannot yet
    /// tell a missing lease from one not listed yet (an extension of docs/api.md).
    #[error("the lease cache is still syncing, retry later")]
    Syncing,
    /// kube-apiserver is unreachable or failing: nothing was written (an extension of docs/api.md).
    #[error("kube-apiserver is unavailable, retry later")]
    Unavailable(#[source] crate::leases::Error),
    #[error("internal error")]
    Internal(#[source] crate::leases::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingAuth | ApiError::UnknownKey => StatusCode::UNAUTHORIZED,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotOneObject
            | ApiError::InvalidJson(_)
            | ApiError::Field(_)
            | ApiError::Name(_)
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::NamespaceForbidden
            | ApiError::HolderForbidden
            | ApiError::ForeignLease
            | ApiError::NamespaceNotServed => StatusCode::FORBIDDEN,
            ApiError::LeaseNotFound | ApiError::NamespaceNotFound | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::ReleaseConflict => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Contended
            | ApiError::Overloaded { .. }
            | ApiError::Syncing
            | ApiError::Unavailable(_)
            | ApiError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::MissingAuth => "missing_auth",
            ApiError::UnknownKey => "unknown_key",
            ApiError::AuthUnavailable(_) => "auth_unavailable",
            ApiError::BodyTooLarge => "body_too_large",
            ApiError::NotOneObject => "not_one_object",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Field(_) => "invalid_field",
            ApiError::NamespaceForbidden => "namespace_forbidden",
            ApiError::HolderForbidden => "holder_forbidden",
            ApiError::ForeignLease => "foreign_lease",
            ApiError::NamespaceNotServed => "namespace_not_served",
            ApiError::Name(_) => "invalid_name",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::LeaseNotFound => "lease_not_found",
            ApiError::NamespaceNotFound => "namespace_not_found",
            ApiError::ReleaseConflict => "release_conflict",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Contended => "contended",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Syncing => "syncing",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(source) = &self {
            // The request-id layer adds the id to the body; the detail stays here.
            tracing::error!(error = %source, "internal error");
        } else if let ApiError::AuthUnavailable(source) = &self {
            tracing::warn!(error = %source, "authentication unavailable");
            tracing::Span::current().record("error", self.metric_label());
        } else if let ApiError::Unavailable(source) = &self {
            tracing::Span::current().record("error", self.metric_label());
            tracing::warn!(error = %source, "kube-apiserver unavailable: answered 503");
        } else {
            tracing::Span::current().record("error", self.metric_label());
        }
        let mut response = json_error(status, &self.to_string());
        match self {
            ApiError::MissingAuth | ApiError::UnknownKey => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Overloaded { retry_after_seconds } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            }
            ApiError::Syncing | ApiError::Unavailable(_) | ApiError::AuthUnavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

/// The `Retry-After` of an unavailable answer: a second lets kube-apiserver
/// (or an authenticator) come back, and is well inside a renewing holder's
/// safe window. Overloaded answers take theirs from the shed request's lease
/// ([`crate::write_queue::retry_after_seconds`]).
pub const RETRY_AFTER_SECONDS: &str = "1";

/// `{"error": message}` with `Content-Type: application/json`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &ErrorBody { error: message.to_owned(), request_id: None })
}

/// Any serializable body as JSON.
pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("wire types serialize");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

impl From<crate::leases::Error> for ApiError {
    fn from(error: crate::leases::Error) -> Self {
        match error {
            crate::leases::Error::ForeignLease => ApiError::ForeignLease,
            crate::leases::Error::Contended => ApiError::Contended,
            crate::leases::Error::Overloaded { retry_after_seconds } => ApiError::Overloaded { retry_after_seconds },
            crate::leases::Error::NamespaceNotFound => ApiError::NamespaceNotFound,
            other if other.is_unavailable() => ApiError::Unavailable(other),
            other => ApiError::Internal(other),
        }
    }
}
