//! Reading a request: the `{namespace}` and `{name}` of the lease routes, and
//! the JSON body with step 2 of the checks in docs/api.md.

use axum::body::Body;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use berth_api::wire::{self, MAX_BODY_BYTES, NameError};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

use super::App;

/// The route of one lease; its parameters are the fields of [`LeaseParams`].
pub(super) const LEASE_ROUTE: &str = "/v1alpha1/namespaces/{namespace}/leases/{name}";
/// The route of a namespace's leases; its parameter is the field of [`NamespaceParams`].
pub(super) const NAMESPACE_ROUTE: &str = "/v1alpha1/namespaces/{namespace}/leases";

#[derive(Deserialize)]
struct LeaseParams {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
struct NamespaceParams {
    namespace: String,
}

/// The percent-decoded `{namespace}` and `{name}` of [`LEASE_ROUTE`] and the
/// routes under it.
///
/// A parameter that does not decode to UTF-8 is refused by the names check
/// in its own step (5), not before authentication. axum then gives no
/// parameter at all, so both names are empty until that step.
pub(super) struct LeasePath {
    pub namespace: String,
    pub name: String,
    not_utf8: Option<NameError>,
}

impl<S: Send + Sync> FromRequestParts<S> for LeasePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(match params::<LeaseParams, S>(parts, state).await? {
            Ok(LeaseParams { namespace, name }) => Self { namespace, name, not_utf8: None },
            Err(error) => Self { namespace: String::new(), name: String::new(), not_utf8: Some(error) },
        })
    }
}

impl LeasePath {
    /// Step 5, then whether this apiserver serves the namespace.
    pub(super) fn check(&self, app: &App) -> Result<(), ApiError> {
        if let Some(error) = &self.not_utf8 {
            return Err(error.clone().into());
        }
        wire::check_names(&self.namespace, &self.name)?;
        app.served(&self.namespace)?;
        tracing::Span::current().record("lease", format!("{}/{}", self.namespace, self.name));
        Ok(())
    }
}

/// The percent-decoded `{namespace}` of [`NAMESPACE_ROUTE`]; not UTF-8 is
/// refused in step 5, as for [`LeasePath`].
pub(super) struct NamespacePath {
    pub namespace: String,
}

impl<S: Send + Sync> FromRequestParts<S> for NamespacePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let namespace = params::<NamespaceParams, S>(parts, state).await?.map(|p| p.namespace);
        // Empty is not a DNS label, so step 5 refuses it.
        Ok(Self { namespace: namespace.unwrap_or_default() })
    }
}

impl NamespacePath {
    /// Step 5, then whether this apiserver serves the namespace.
    pub(super) fn check(&self, app: &App) -> Result<(), ApiError> {
        if !wire::is_dns_label(&self.namespace) {
            return Err(NameError::Namespace.into());
        }
        app.served(&self.namespace)
    }
}

/// The route's parameters, or the name error of one that is not UTF-8 once
/// percent-decoded. Any other rejection means the route and `T` disagree: a
/// bug, answered 500.
async fn params<T: DeserializeOwned + Send, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Result<T, NameError>, Response> {
    match Path::<T>::from_request_parts(parts, state).await {
        Ok(Path(params)) => Ok(Ok(params)),
        Err(PathRejection::FailedToDeserializePathParams(failed))
            if matches!(failed.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
        {
            let in_namespace = matches!(failed.kind(), ErrorKind::InvalidUtf8InPathParam { key } if key == "namespace");
            Ok(Err(if in_namespace { NameError::Namespace } else { NameError::Name }))
        }
        Err(rejection) => {
            tracing::error!(error = %rejection.body_text(), "path parameters do not match the route");
            Err(rejection.into_response())
        }
    }
}

/// Step 2: at most [`MAX_BODY_BYTES`], one JSON object, known fields only.
/// The body is read only after authentication, and never past the limit.
pub(super) async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
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

/// Whether a list request asks for a watch: its `watch` query parameter is
/// `1` or `true` (`0`, `false` or no parameter: a plain list).
///
/// # Errors
/// [`ApiError::InvalidQuery`] for any other value.
pub(super) fn wants_watch(query: Option<&str>) -> Result<bool, ApiError> {
    let value = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| match pair.split_once('=') {
        Some(("watch", value)) => Some(value),
        _ if pair == "watch" => Some(""),
        _ => None,
    });
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(_) => Err(ApiError::InvalidQuery("watch must be 1, true, 0 or false")),
    }
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
    fn the_watch_parameter_is_a_kubernetes_boolean() {
        for (query, watch) in [(None, false), (Some("watch=1"), true), (Some("x=y&watch=true"), true)] {
            assert_eq!(wants_watch(query).unwrap(), watch, "{query:?}");
        }
        for query in ["watch=0", "watch=false", "other=1", ""] {
            assert!(!wants_watch(Some(query)).unwrap(), "{query}");
        }
        for query in ["watch=yes", "watch", "watch=2"] {
            let err = wants_watch(Some(query)).unwrap_err();
            assert_eq!(err.to_string(), "watch must be 1, true, 0 or false", "{query}");
        }
    }
}
