//! The one error type of this crate.

use std::time::Duration;

use berth_api::wire::AcquireResponse;

use crate::tls::TrustedBy;
use crate::tls_errors::{CertificateProblem, find_rustls_error};

/// Everything a call can fail with. Each HTTP answer that is not a success
/// maps to exactly one variant, so callers can match on the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease is held by someone else (acquire), or is no longer ours
    /// (renew answered `acquired:false`). Carries the server's answer, which
    /// names the current holder.
    #[error("{}", not_acquired_message(.current))]
    NotAcquired { current: AcquireResponse },
    /// 409: the lease is held by another identity or token.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 401: the key is missing or unknown.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the key's tenant may not use this namespace or holder.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such lease (or it belongs to another tenant), or no such route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 400 or 413 from the server, or a name this client refuses to put in a URL.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Any other status, typically a 5xx: transient, worth retrying.
    /// `request_id` is the server's `X-Request-Id`, to look the failure up in
    /// its log; `retry_after` its `Retry-After` in seconds, if any (an
    /// overloaded apiserver answers 503 with `Retry-After: 1`).
    #[error("server error {status}: {message}{}", request_id_suffix(.request_id))]
    Server { status: u16, message: String, request_id: Option<String>, retry_after: Option<Duration> },
    /// The request did not get an HTTP answer: connection refused, TLS
    /// failure, timeout, or a stream that broke off.
    #[error("{message}")]
    Transport {
        message: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The server answered something this client cannot decode.
    #[error("cannot decode the server's answer: {0}")]
    Decode(String),
    /// The builder was given something unusable (URL, key file, CA file).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// A fixed, low-cardinality label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotAcquired { .. } => "not_acquired",
            Error::Conflict(_) => "conflict",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::InvalidRequest(_) => "invalid_request",
            Error::Server { .. } => "server",
            Error::Transport { .. } => "transport",
            Error::Decode(_) => "decode",
            Error::Config(_) => "config",
        }
    }

    /// How long the server asked to wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a non-success status, its body and its `Retry-After` header to a
    /// variant. The body is `{"error": "..."}` per docs/api.md; anything else is
    /// shown as text.
    pub(crate) fn from_status(status: u16, body: &[u8], request_id: Option<String>, retry_after: Option<&str>) -> Self {
        let message = match serde_json::from_slice::<berth_api::wire::ErrorBody>(body) {
            Ok(body) => body.error,
            Err(_) => {
                let text = String::from_utf8_lossy(body).trim().to_owned();
                if text.is_empty() { format!("HTTP {status}") } else { text }
            }
        };
        match status {
            400 | 413 => Error::InvalidRequest(message),
            401 => Error::Unauthorized(message),
            403 => Error::Forbidden(message),
            404 => Error::NotFound(message),
            409 => Error::Conflict(message),
            _ => Error::Server { status, message, request_id, retry_after: retry_after.and_then(parse_retry_after) },
        }
    }

    /// Wraps a reqwest error with a message that names the real cause (the
    /// TLS alert, the refused connection, the timeout) rather than only
    /// "error sending request".
    pub(crate) fn transport(context: &str, source: reqwest::Error) -> Self {
        Self::request(context, &TrustedBy::Caller, source)
    }

    /// [`Self::transport`] for sending a request, which may be refused in
    /// the TLS handshake: a refused certificate is explained with what to
    /// fix, naming `trusted`, what the certificate was checked against.
    pub(crate) fn request(context: &str, trusted: &TrustedBy, source: reqwest::Error) -> Self {
        let message = format!("{context}: {}", describe_transport(&source, trusted));
        Error::Transport { message, source: Some(source) }
    }
}

/// `Retry-After` in delay-seconds; the HTTP-date form is ignored.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u32>().ok().map(|s| Duration::from_secs(s.into()))
}

fn not_acquired_message(current: &AcquireResponse) -> String {
    match (current.holder.as_str(), current.expires_at) {
        ("", _) => "not acquired".to_owned(),
        (holder, Some(expires)) => {
            format!("not acquired: held by {holder} until {}", berth_api::time::format(&expires))
        }
        (holder, None) => format!("not acquired: held by {holder}"),
    }
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    request_id.as_ref().map(|id| format!(" (request id {id})")).unwrap_or_default()
}

/// The most useful description of a transport failure.
fn describe_transport(err: &reqwest::Error, trusted: &TrustedBy) -> String {
    if let Some(tls) = find_rustls_error(err) {
        return match CertificateProblem::of(tls) {
            Some(problem) => problem.explain(trusted),
            None => format!("TLS: {tls}"),
        };
    }
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    // The innermost cause is the one that says what happened
    // ("Connection refused", "dns error: ...").
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::addr_eq(cause, err as &dyn std::error::Error) {
        err.to_string()
    } else if err.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_variants_with_the_server_message() {
        let body = br#"{"error":"lease not found"}"#;
        let cases: [(u16, &str); 7] = [
            (400, "invalid_request"),
            (413, "invalid_request"),
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (409, "conflict"),
            (500, "server"),
        ];
        for (status, label) in cases {
            let err = Error::from_status(status, body, None, None);
            assert_eq!(err.metric_label(), label, "{status}");
            assert!(err.to_string().contains("lease not found"), "{err}");
        }
    }

    #[test]
    fn server_error_shows_the_request_id() {
        let body = br#"{"error":"internal error","requestId":"abc"}"#;
        let err = Error::from_status(500, body, Some("abc".into()), None);
        assert_eq!(err.to_string(), "server error 500: internal error (request id abc)");
    }

    #[test]
    fn retry_after_in_seconds_is_kept_for_server_errors_only() {
        let body = br#"{"error":"overloaded, retry later"}"#;
        let overloaded = Error::from_status(503, body, None, Some("1"));
        assert_eq!(overloaded.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(overloaded.to_string(), "server error 503: overloaded, retry later");
        let date = Error::from_status(503, body, None, Some("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(date.retry_after(), None);
        assert_eq!(Error::from_status(409, body, None, Some("1")).retry_after(), None);
    }

    #[test]
    fn non_json_error_body_is_shown_as_text() {
        assert_eq!(Error::from_status(503, b"not ready\n", None, None).to_string(), "server error 503: not ready");
        assert_eq!(Error::from_status(502, b"", None, None).to_string(), "server error 502: HTTP 502");
    }

    #[test]
    fn not_acquired_names_the_current_holder() {
        let current: AcquireResponse = serde_json::from_str(
            r#"{"acquired":false,"holder":"east/a","expiresAt":"2026-11-24T06:15:30.191483000Z"}"#,
        )
        .unwrap();
        let err = Error::NotAcquired { current };
        assert_eq!(err.to_string(), "not acquired: held by east/a until 2026-11-24T06:15:30.191483000Z");
    }
}
