//! The OpenAPI 3 document served at `GET /openapi.json`, written by hand from
//! docs/api.md. A test checks that every route of the router appears in it.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn json_ok(schema: &str, description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The errors every authenticated lease route can answer.
fn common_errors() -> Value {
    json!({
        "400": error_response("Bad body, field or name; the message names what is wrong"),
        "401": error_response("`missing or malformed Authorization header` or `unauthorized`"),
        "403": error_response("`not authorized for this namespace`, `holder not authorized for this identity`, or another tenant's lease"),
        "413": error_response("`request body must be at most 4096 bytes`"),
        "500": {"description": "`{\"error\":\"internal error\",\"requestId\":…}`", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "503": {
            "description": "`too many concurrent writes to this lease, retry` (every conditional write met a conflict), or, an extension of the core API, `overloaded, retry later` with a random `Retry-After` (renews and releases: 1 to half the seconds left of the caller's tenure; acquires: 5 to 10): the queue for a write slot to kube-apiserver was full (`--max-queued-writes`), and nothing was written; `kube-apiserver is unavailable, retry later` with `Retry-After: 1`; on reads, `the lease cache is still syncing, retry later` with `Retry-After: 1` (a just-started apiserver, before its cache has listed the leases)",
            "headers": {"Retry-After": {"description": "Seconds to wait before retrying; sent with every 503 but the conflict's", "schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        },
    })
}

fn params(with_name: bool) -> Value {
    let mut list = vec![json!({"name": "namespace", "in": "path", "required": true,
        "description": "An RFC 1123 label", "schema": {"type": "string", "maxLength": 63}})];
    if with_name {
        list.push(json!({"name": "name", "in": "path", "required": true,
            "description": "A DNS subdomain", "schema": {"type": "string", "maxLength": 253}}));
    }
    Value::Array(list)
}

fn write_op(summary: &str, request: &str, responses: Value) -> Value {
    let mut all = common_errors();
    for (code, response) in responses.as_object().expect("responses object") {
        all[code] = response.clone();
    }
    json!({"summary": summary, "parameters": params(true), "requestBody": json_body(request), "responses": all})
}

const COLLECTION_WATCH: &str = "With `watch=1` (or `true`): Server-Sent Events in the Kubernetes style. \
`event: added` with the Lease view once per lease the tenant may read, then one `event: bookmark` with \
`data: {\"initialEventsEnd\":true}` (the whole current list has been sent, also when it is empty), then \
`event: added` / `modified` / `deleted` per change (`deleted` carries the last state sent; a lease whose \
namespace the tenant may no longer use is deleted for it). A `:` comment line every 15 s keeps the stream alive. \
Only leases the tenant may read are ever sent.";

/// The `watch` query parameter of the list routes, after `params`.
fn with_watch(params: Value) -> Value {
    let mut list = params.as_array().cloned().unwrap_or_default();
    list.push(json!({"name": "watch", "in": "query", "required": false,
        "description": "`1` or `true`: a collection watch (Server-Sent Events) instead of a list",
        "schema": {"type": "string", "enum": ["1", "true", "0", "false"]}}));
    Value::Array(list)
}

/// A list as JSON, or with `watch=1` an event stream.
fn list_or_watch() -> Value {
    json!({"description": "The leases; with `watch=1`, an event stream of them",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LeaseList"}},
                    "text/event-stream": {"schema": {"type": "string"}}}})
}

/// The whole document.
pub fn document() -> Value {
    let time = json!({"type": "string", "format": "date-time", "description": "RFC 3339, UTC, nine fraction digits"});
    let target_status = json!({"type": "object", "description": "What the operator last did to the target",
        "required": ["applied", "observedAt"], "properties": {
        "applied": {"type": "string", "enum": ["acquire", "release"]},
        "observedAt": time.clone(), "message": {"type": "string"},
        "stoppedAt": {"type": "string", "format": "date-time",
            "description": "When no pod of the released target ran any more; absent while they stop"}}});
    let conditions = json!({"type": "array", "description": "Status conditions; left out when there are none",
        "items": {"type": "object", "required": ["type", "status", "reason", "lastTransitionTime"], "properties": {
        "type": {"type": "string"}, "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"}, "message": {"type": "string"},
        "lastTransitionTime": time.clone(), "observedGeneration": {"type": "integer", "format": "int64"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Berth lease API", "version": "v1alpha1",
                 "description": "TTL leases stored as BerthLease objects. HTTPS only; JSON in camelCase."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1alpha1/namespaces/{namespace}/leases/{name}/acquire": {"post": write_op(
                "Acquire (or renew, when the holder is already live); creates the lease when absent",
                "AcquireRequest", json!({
                    "200": json_ok("AcquireResponse", "Answered, also when not acquired"),
                    "404": error_response("`namespace not found`, when the acquire would create the lease"),
                }))},
            "/v1alpha1/namespaces/{namespace}/leases/{name}/renew": {"post": write_op(
                "Renew a live tenure; acquired:false means the lease is lost", "RenewRequest",
                json!({"200": json_ok("AcquireResponse", "Answered, also when not renewed")}))},
            "/v1alpha1/namespaces/{namespace}/leases/{name}/release": {"post": write_op(
                "Release; idempotent", "ReleaseRequest", json!({
                    "204": {"description": "Released, or already released or expired"},
                    "409": error_response("`lease held by another identity or token`"),
                }))},
            "/v1alpha1/namespaces/{namespace}/leases/{name}": {"get": {
                "summary": "One lease", "parameters": params(true),
                "responses": {"200": json_ok("Lease", "The lease"), "404": error_response("`lease not found`"),
                              "401": error_response("Unauthenticated"), "403": error_response("Not authorized")}}},
            "/v1alpha1/namespaces/{namespace}/leases/{name}/watch": {"get": {
                "summary": "Server-Sent Events: `event: lease` with the Lease view per change, starting with the current state; a `:` comment every 15 s",
                "parameters": params(true),
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              "404": error_response("`lease not found`"),
                              "401": error_response("Unauthenticated"), "403": error_response("Not authorized")}}},
            "/v1alpha1/namespaces/{namespace}/leases": {"get": {
                "summary": "Leases in one namespace, sorted by name; with `watch=1`, a collection watch of them",
                "description": COLLECTION_WATCH,
                "parameters": with_watch(params(false)),
                "responses": {"200": list_or_watch(),
                              "400": error_response("`watch must be 1, true, 0 or false`, or a bad namespace"),
                              "401": error_response("Unauthenticated"), "403": error_response("Not authorized")}}},
            "/v1alpha1/leases": {"get": {
                "summary": "Leases in every namespace the tenant may use; with `watch=1`, a collection watch of them",
                "description": COLLECTION_WATCH,
                "parameters": with_watch(json!([])),
                "responses": {"200": list_or_watch(),
                              "400": error_response("`watch must be 1, true, 0 or false`"),
                              "401": error_response("Unauthenticated")}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": {"description": "`ok\\n`", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/readyz": {"get": {"summary": "Readiness: the informer cache has synced and kube-apiserver is reachable", "security": [],
                "responses": {"200": {"description": "`ok\\n`", "content": {"text/plain": {"schema": {"type": "string"}}}},
                              "503": {"description": "`not ready\\n`", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/console/": {"get": {"summary": "The web console (docs/console.md); `/console` redirects here", "security": [],
                "responses": {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/console/{file}": {"get": {"summary": "A file of the web console, embedded in the binary", "security": [],
                "parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The file"}, "404": error_response("`not found`")}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "requestId": {"type": "string", "description": "Only on a 500"}}},
                "AcquireRequest": {"type": "object", "additionalProperties": false, "required": ["holder", "ttlSeconds"], "properties": {
                    "holder": {"type": "string", "maxLength": 253, "description": "`<tenant>` or `<tenant>/…`"},
                    "ttlSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 86400},
                    "waitSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 300,
                                    "description": "Block until granted or this many seconds pass"},
                    "semantics": {"type": "string", "enum": ["at-most-once", "at-least-once"],
                                  "description": "Used only when the acquire creates the lease"},
                    "maxHolders": {"type": "integer", "format": "int32", "minimum": 1,
                                   "description": "at-least-once only; used only when the acquire creates the lease"}}},
                "RenewRequest": {"type": "object", "additionalProperties": false, "required": ["holder", "fencingToken", "ttlSeconds"], "properties": {
                    "holder": {"type": "string", "maxLength": 253},
                    "fencingToken": {"type": "integer", "format": "int32", "description": "Non-zero"},
                    "ttlSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 86400}}},
                "ReleaseRequest": {"type": "object", "additionalProperties": false, "required": ["holder", "fencingToken"], "properties": {
                    "holder": {"type": "string", "maxLength": 253},
                    "fencingToken": {"type": "integer", "format": "int32"}}},
                "AcquireResponse": {"type": "object", "required": ["acquired", "holder"], "properties": {
                    "acquired": {"type": "boolean"},
                    "holder": {"type": "string", "description": "The caller when acquired, else the current holder (empty when none)"},
                    "fencingToken": {"type": "integer", "format": "int32", "description": "Only when acquired"},
                    "expiresAt": time.clone(), "acquiredAt": time.clone()}},
                "Holder": {"type": "object", "required": ["identity", "fencingToken", "acquiredAt", "renewedAt", "expiresAt"], "properties": {
                    "identity": {"type": "string"}, "fencingToken": {"type": "integer", "format": "int32"},
                    "acquiredAt": time.clone(), "renewedAt": time.clone(), "expiresAt": time.clone()}},
                "Lease": {"type": "object", "required": ["namespace", "name", "semantics", "state", "holders", "fencingToken", "transitions", "ttlSeconds", "heartbeatIntervalSeconds"], "properties": {
                    "namespace": {"type": "string"}, "name": {"type": "string"},
                    "semantics": {"type": "string", "enum": ["at-most-once", "at-least-once"]},
                    "state": {"type": "string", "enum": ["available", "held", "released", "expired"]},
                    "holders": {"type": "array", "items": {"$ref": "#/components/schemas/Holder"}},
                    "fencingToken": {"type": "integer", "format": "int32"},
                    "transitions": {"type": "integer", "format": "int64"},
                    "ttlSeconds": {"type": "integer", "format": "int32"},
                    "heartbeatIntervalSeconds": {"type": "integer", "format": "int32"},
                    "maxHolders": {"type": "integer", "format": "int32"},
                    "target": {"type": "object", "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}}},
                    "updatedAt": time,
                    "targetStatus": target_status, "conditions": conditions}},
                "LeaseList": {"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}}},
            }
        }
    })
}
