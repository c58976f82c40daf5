//! The wire contract of docs/api.md through the router, on a real control plane:
//! every check with its status and message, in order; auth; tenancy; routes;
//! request ids; and a table of malformed requests that must change nothing.

mod common;

use axum::body::Body;
use axum::http::Request;
use berth_api::BerthLease;
use common::{Harness, KEY_ANY, KEY_EAST, KEY_WEST};
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// (verb, key, path override, body, status, message prefix)
type CheckCase<'a> = (&'a str, Option<&'a str>, Option<String>, String, u16, &'a str);
/// (method, path, key, extra header, body)
type RawCase<'a> = (&'a str, String, Option<&'a str>, Option<(&'a str, &'a str)>, String);

#[tokio::test]
async fn every_check_answers_its_status_and_message() {
    let h = Harness::new("contract-checks").await;
    let long_holder = format!("east/{}", "h".repeat(249));
    let big = format!(r#"{{"holder":"east","ttlSeconds":5,"pad":"{}"}}"#, "x".repeat(4100));
    let cases: Vec<CheckCase> = vec![
        // 1. authentication
        ("acquire", None, None, "{}".into(), 401, "missing or malformed Authorization header"),
        ("acquire", Some("wrong-key"), None, "{}".into(), 401, "unauthorized"),
        // 2. body
        ("acquire", Some(KEY_EAST), None, big.clone(), 413, "request body must be at most 4096 bytes"),
        ("acquire", Some(KEY_EAST), None, "[]".into(), 400, "request body must contain one JSON object"),
        ("acquire", Some(KEY_EAST), None, "{} {}".into(), 400, "request body must contain one JSON object"),
        ("acquire", Some(KEY_EAST), None, r#"{"holder":"#.into(), 400, "invalid json body: "),
        (
            "renew",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","x":1}"#.into(),
            400,
            "invalid json body: unknown field `x`",
        ),
        // 3. fields
        ("acquire", Some(KEY_EAST), None, r#"{"ttlSeconds":5}"#.into(), 400, "holder is required"),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            json!({"holder": long_holder, "ttlSeconds": 5}).to_string(),
            400,
            "holder must be at most 253 bytes",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":0}"#.into(),
            400,
            "ttlSeconds must be positive",
        ),
        ("acquire", Some(KEY_EAST), None, r#"{"holder":"east"}"#.into(), 400, "ttlSeconds must be positive"),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":86401}"#.into(),
            400,
            "ttlSeconds must be at most 86400",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":5,"waitSeconds":301}"#.into(),
            400,
            "waitSeconds must be between 1 and 300",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":5,"maxHolders":2}"#.into(),
            400,
            "maxHolders is only allowed with semantics at-least-once",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":5,"semantics":"at-least-once","maxHolders":0}"#.into(),
            400,
            "maxHolders must be positive",
        ),
        (
            "renew",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","ttlSeconds":5}"#.into(),
            400,
            "fencingToken must be non-zero",
        ),
        ("renew", Some(KEY_EAST), None, r#"{"fencingToken":1,"ttlSeconds":5}"#.into(), 400, "holder is required"),
        (
            "renew",
            Some(KEY_EAST),
            None,
            r#"{"holder":"east","fencingToken":1}"#.into(),
            400,
            "ttlSeconds must be positive",
        ),
        ("release", Some(KEY_EAST), None, r#"{"fencingToken":1}"#.into(), 400, "holder is required"),
        // 4. authorization: namespace, then holder
        (
            "acquire",
            Some(KEY_EAST),
            Some("/v1alpha1/namespaces/elsewhere/leases/l/acquire".into()),
            r#"{"holder":"east","ttlSeconds":5}"#.into(),
            403,
            "not authorized for this namespace",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"west/a","ttlSeconds":5}"#.into(),
            403,
            "holder not authorized for this identity",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"eastern","ttlSeconds":5}"#.into(),
            403,
            "holder not authorized for this identity",
        ),
        (
            "release",
            Some(KEY_WEST),
            None,
            r#"{"holder":"east","fencingToken":1}"#.into(),
            403,
            "holder not authorized for this identity",
        ),
        // 5. names (a tenant allowed everywhere reaches this step)
        (
            "acquire",
            Some(KEY_ANY),
            Some("/v1alpha1/namespaces/Bad_NS/leases/l/acquire".into()),
            r#"{"holder":"any","ttlSeconds":5}"#.into(),
            400,
            "namespace must be a valid RFC 1123 label",
        ),
        (
            "acquire",
            Some(KEY_ANY),
            Some(h.lease_path("Bad_Name", "/acquire")),
            r#"{"holder":"any","ttlSeconds":5}"#.into(),
            400,
            "name must be a valid DNS subdomain",
        ),
        (
            "acquire",
            Some(KEY_ANY),
            Some(h.lease_path(&"a".repeat(254), "/acquire")),
            r#"{"holder":"any","ttlSeconds":5}"#.into(),
            400,
            "name must be a valid DNS subdomain",
        ),
        (
            "acquire",
            Some(KEY_ANY),
            Some("/v1alpha1/namespaces/elsewhere/leases/l/acquire".into()),
            r#"{"holder":"any","ttlSeconds":5}"#.into(),
            403,
            "namespace is not served by this apiserver",
        ),
        // Order: the first failing check decides.
        ("acquire", None, None, "not json".into(), 401, "missing or malformed Authorization header"),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            format!(r#"{{"holder":"west","ttlSeconds":0,"p":"{}"}}"#, "x".repeat(4100)),
            413,
            "request body must be at most 4096 bytes",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            None,
            r#"{"holder":"west","ttlSeconds":0}"#.into(),
            400,
            "ttlSeconds must be positive",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            Some("/v1alpha1/namespaces/elsewhere/leases/Bad_Name/acquire".into()),
            r#"{"holder":"west","ttlSeconds":5}"#.into(),
            403,
            "not authorized for this namespace",
        ),
        (
            "acquire",
            Some(KEY_EAST),
            Some(h.lease_path("Bad_Name", "/acquire")),
            r#"{"holder":"west","ttlSeconds":5}"#.into(),
            403,
            "holder not authorized for this identity",
        ),
    ];
    for (verb, key, path, body, status, message) in cases {
        let path = path.unwrap_or_else(|| h.lease_path("checked", &format!("/{verb}")));
        let reply = h.call("POST", &path, key, &body).await;
        let context = format!("{verb} {path} {body:.80}: {reply:?}");
        assert_eq!(reply.status.as_u16(), status, "{context}");
        assert_eq!(reply.headers["content-type"], "application/json", "{context}");
        assert!(reply.error().starts_with(message), "{context}");
    }
    // None of that created the lease.
    assert!(h.ns.api::<BerthLease>().get_opt("checked").await.unwrap().is_none());
}

#[tokio::test]
async fn malformed_authorization_headers_are_401() {
    let h = Harness::new("contract-auth").await;
    let body = r#"{"holder":"east","ttlSeconds":5}"#;
    let headers: Vec<(&[u8], &str)> = vec![
        (b"bearer key-east", "missing or malformed Authorization header"),
        (b"Bearer", "missing or malformed Authorization header"),
        (b"Bearer ", "missing or malformed Authorization header"),
        (b"Basic a2V5LWVhc3Q=", "missing or malformed Authorization header"),
        (b"BEARER key-east", "missing or malformed Authorization header"),
        (b"Bearer  key-east", "unauthorized"),
        (b"Bearer key-east ", "unauthorized"),
        (b"Bearer key-eas", "unauthorized"),
        (b"Bearer \xffkey", "missing or malformed Authorization header"),
    ];
    for (value, message) in headers {
        let request = Request::post(h.lease_path("auth", "/acquire"))
            .header("authorization", axum::http::HeaderValue::from_bytes(value).unwrap())
            .body(Body::from(body))
            .unwrap();
        let reply = h.send(request).await;
        assert_eq!((reply.status.as_u16(), reply.error()), (401, message), "{value:?}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    // The right key works.
    let reply = h.call("POST", &h.lease_path("auth", "/acquire"), Some(KEY_EAST), body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_json_errors() {
    let h = Harness::new("contract-routes").await;
    let cases = [
        ("GET", "/nope".to_string(), 404, "not found"),
        ("GET", "/v1alpha2/leases".to_string(), 404, "not found"),
        ("POST", h.lease_path("x", "/steal"), 404, "not found"),
        ("POST", h.lease_path("x", "/acquire/more"), 404, "not found"),
        ("GET", h.lease_path("x", "/acquire"), 405, "method not allowed"),
        ("DELETE", h.lease_path("x", ""), 405, "method not allowed"),
        ("PUT", "/v1alpha1/leases".to_string(), 405, "method not allowed"),
        ("POST", "/healthz".to_string(), 405, "method not allowed"),
    ];
    for (method, path, status, message) in cases {
        let reply = h.call(method, &path, Some(KEY_EAST), "{}").await;
        assert_eq!((reply.status.as_u16(), reply.error()), (status, message), "{method} {path}");
        assert_eq!(reply.headers["content-type"], "application/json");
    }
}

#[tokio::test]
async fn request_id_is_echoed_when_well_formed_and_generated_otherwise() {
    let h = Harness::new("contract-reqid").await;
    let send = |id: Option<&'static str>, path: String| {
        let mut request = Request::get(path).header("authorization", format!("Bearer {KEY_EAST}"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        h.send(request.body(Body::empty()).unwrap())
    };
    let ok = send(Some("trace_01-AB"), h.lease_path("", "").trim_end_matches('/').to_owned()).await;
    assert_eq!((ok.status.as_u16(), ok.headers["x-request-id"].to_str().unwrap()), (200, "trace_01-AB"));
    let missing = send(Some("abc"), h.lease_path("missing", "")).await;
    assert_eq!((missing.status.as_u16(), missing.headers["x-request-id"].to_str().unwrap()), (404, "abc"));
    for id in [None, Some("has space"), Some("semi;colon")] {
        let reply = send(id, "/nope".into()).await;
        let generated = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(generated.len(), 32, "{id:?}");
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()), "{generated}");
    }
    let long = "x".repeat(65);
    let reply =
        h.send(Request::get("/healthz").header("x-request-id", long.as_str()).body(Body::empty()).unwrap()).await;
    assert_ne!(reply.headers["x-request-id"], long.as_str());
    assert_eq!(reply.text, "ok\n");
}

#[tokio::test]
async fn health_and_openapi_need_no_key_and_the_document_lists_every_route() {
    let h = Harness::new("contract-openapi").await;
    let healthz = h.call("GET", "/healthz", None, "").await;
    assert_eq!((healthz.status.as_u16(), healthz.text.as_str()), (200, "ok\n"));
    assert!(healthz.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let readyz = h.call("GET", "/readyz", None, "").await;
    assert_eq!((readyz.status.as_u16(), readyz.text.as_str()), (200, "ok\n"));

    let doc = h.call("GET", "/openapi.json", None, "").await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."), "{:?}", doc.json["openapi"]);
    let lease = "/v1alpha1/namespaces/{namespace}/leases/{name}";
    let routes = [
        (format!("{lease}/acquire"), "post"),
        (format!("{lease}/renew"), "post"),
        (format!("{lease}/release"), "post"),
        (lease.to_owned(), "get"),
        (format!("{lease}/watch"), "get"),
        ("/v1alpha1/namespaces/{namespace}/leases".to_owned(), "get"),
        ("/v1alpha1/leases".to_owned(), "get"),
        ("/healthz".to_owned(), "get"),
        ("/readyz".to_owned(), "get"),
        ("/openapi.json".to_owned(), "get"),
        ("/console/".to_owned(), "get"),
        ("/console/{file}".to_owned(), "get"),
    ];
    let paths = doc.json["paths"].as_object().unwrap();
    assert_eq!(paths.len(), routes.len(), "{:?}", paths.keys());
    for (path, method) in routes {
        assert!(paths.get(&path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
    }
    // The write routes document the overload answer and its Retry-After.
    for verb in ["acquire", "renew", "release"] {
        let overloaded = &doc.json["paths"][format!("{lease}/{verb}")]["post"]["responses"]["503"];
        assert!(overloaded["description"].as_str().unwrap().contains("overloaded, retry later"), "{verb}");
        assert!(overloaded["headers"].get("Retry-After").is_some(), "{verb}: {overloaded}");
    }
    // The list routes document their collection watch.
    for list in ["/v1alpha1/leases", "/v1alpha1/namespaces/{namespace}/leases"] {
        let get = &doc.json["paths"][list]["get"];
        assert!(get["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "watch"), "{list}");
        assert!(get["responses"]["200"]["content"].get("text/event-stream").is_some(), "{list}");
        assert!(get["description"].as_str().unwrap().contains("initialEventsEnd"), "{list}");
    }
    // Every schema reference resolves.
    let text = doc.json.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(doc.json["components"]["schemas"].get(name).is_some(), "dangling $ref {name}");
    }
}

#[tokio::test]
async fn other_tenants_leases_never_leak() {
    let h = Harness::new("contract-tenancy").await;
    let granted = h.post("secret", "acquire", KEY_EAST, json!({"holder": "east/a", "ttlSeconds": 60})).await;
    assert_eq!(granted.json["acquired"], true, "{granted:?}");
    // A lease created with kubectl carries no tenant: every tenant of the namespace sees it.
    let shared = BerthLease::new("shared", Default::default());
    h.ns.api::<BerthLease>().create(&PostParams::default(), &shared).await.unwrap();
    h.wait_cached("secret").await;
    h.wait_cached("shared").await;

    let ns_list = format!("/v1alpha1/namespaces/{}/leases", h.ns.name);
    let names = |reply: &common::Reply| -> Vec<String> {
        reply.json["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
    };
    let east = h.get(&ns_list, KEY_EAST).await;
    assert_eq!(names(&east), ["secret", "shared"]);
    for key in [KEY_WEST, KEY_ANY] {
        assert_eq!(names(&h.get(&ns_list, key).await), ["shared"], "{key}");
        let get = h.get(&h.lease_path("secret", ""), key).await;
        assert_eq!((get.status.as_u16(), get.error()), (404, "lease not found"), "{key}");
        let watch = h.get(&h.lease_path("secret", "/watch"), key).await;
        assert_eq!((watch.status.as_u16(), watch.error()), (404, "lease not found"), "{key}");
        let holder = if key == KEY_WEST { "west" } else { "any" };
        for (verb, body) in [
            ("acquire", json!({"holder": holder, "ttlSeconds": 5})),
            ("renew", json!({"holder": holder, "fencingToken": 1, "ttlSeconds": 5})),
            ("release", json!({"holder": holder, "fencingToken": 1})),
        ] {
            let reply = h.post("secret", verb, key, body).await;
            assert_eq!(reply.status, 403, "{key} {verb}: {reply:?}");
            assert!(!reply.text.contains("east/a"), "{reply:?}");
        }
    }
    let all = h.get("/v1alpha1/leases", KEY_ANY).await;
    assert!(names(&all).contains(&"shared".to_owned()));
    assert!(!all.text.contains("east/a"), "{}", all.text);
    // East still holds it, untouched.
    let view = h.get(&h.lease_path("secret", ""), KEY_EAST).await;
    assert_eq!(
        (view.json["holders"][0]["identity"].as_str(), view.json["fencingToken"].as_i64()),
        (Some("east/a"), Some(1))
    );
}

/// At least 50 malformed requests: bodies, sizes, headers, paths, unicode,
/// numbers out of range. Each gets a 4xx with a JSON error; no lease changes.
#[tokio::test]
async fn malformed_requests_get_a_4xx_json_error_and_change_no_lease() {
    let h = Harness::new("contract-fuzz").await;
    let granted = h.post("steady", "acquire", KEY_EAST, json!({"holder": "east/a", "ttlSeconds": 300})).await;
    assert_eq!(granted.json["acquired"], true, "{granted:?}");
    let api = h.ns.api::<BerthLease>();
    let before = api.get("steady").await.unwrap();

    let acquire = h.lease_path("steady", "/acquire");
    let renew = h.lease_path("steady", "/renew");
    let release = h.lease_path("steady", "/release");
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let deep_object = format!(r#"{{"holder":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    let nul_holder = json!({"holder": "east\u{0}", "ttlSeconds": 5}).to_string();
    let big_holder = json!({"holder": format!("east/{}", "é".repeat(130)), "ttlSeconds": 5}).to_string();
    let pad = |n: usize| format!(r#"{{"holder":"east","ttlSeconds":5,"p":"{}"}}"#, "x".repeat(n));
    let k = Some(KEY_EAST);
    let mut cases: Vec<RawCase> = vec![
        // bodies
        ("POST", acquire.clone(), k, None, "".into()),
        ("POST", acquire.clone(), k, None, " ".into()),
        ("POST", acquire.clone(), k, None, "null".into()),
        ("POST", acquire.clone(), k, None, "true".into()),
        ("POST", acquire.clone(), k, None, "42".into()),
        ("POST", acquire.clone(), k, None, r#""string""#.into()),
        ("POST", acquire.clone(), k, None, "[]".into()),
        ("POST", acquire.clone(), k, None, r#"[{"holder":"east","ttlSeconds":5}]"#.into()),
        ("POST", acquire.clone(), k, None, "{".into()),
        ("POST", acquire.clone(), k, None, "}".into()),
        ("POST", acquire.clone(), k, None, "{'holder':'east'}".into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5,}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5}{}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5} trailing"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","holder":"east","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"Holder":"east","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttl_seconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":null,"ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":7,"ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":["east"],"ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":"5"}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":true}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5,"semantics":"exactly-once"}"#.into()),
        ("POST", acquire.clone(), k, None, deep.clone()),
        ("POST", acquire.clone(), k, None, deep_object),
        ("POST", acquire.clone(), k, None, "\u{feff}{}".into()),
        ("POST", acquire.clone(), k, None, "{\"holder\":\"east\",\"ttlSeconds\":5}\u{0}".into()),
        // sizes
        ("POST", acquire.clone(), k, None, pad(4097)),
        ("POST", acquire.clone(), k, None, pad(100_000)),
        ("POST", acquire.clone(), k, Some(("content-length", "99999999")), r#"{"holder":"east"}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5,"waitSeconds":0}"#.into()),
        // numbers out of range
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":2147483648}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":-2147483649}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":1e3}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5.5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":1e400}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":-1}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":NaN}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":0x10}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"east","ttlSeconds":5,"waitSeconds":100000}"#.into()),
        ("POST", renew.clone(), k, None, r#"{"holder":"east/a","fencingToken":4294967297,"ttlSeconds":5}"#.into()),
        ("POST", renew.clone(), k, None, r#"{"holder":"east/a","fencingToken":0,"ttlSeconds":5}"#.into()),
        ("POST", release.clone(), k, None, r#"{"holder":"east/a","fencingToken":-99999999999}"#.into()),
        // unicode
        ("POST", acquire.clone(), k, None, r#"{"holder":"ëast","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, r#"{"holder":"\ud800","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), k, None, nul_holder),
        ("POST", acquire.clone(), k, None, big_holder),
        ("POST", acquire.clone(), k, None, r#"{"hölder":"east","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path("st%C3%A9ady", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path("%FF", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", "/v1alpha1/namespaces/%E2%9C%93/leases/steady/acquire".into(), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        // paths
        ("POST", h.lease_path("a%2Fb", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path("UPPER", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path("-dash", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path("a..b", "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", h.lease_path(&"a".repeat(300), "/acquire"), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("POST", format!("/v1alpha1/namespaces/{}/leases/steady/ACQUIRE", h.ns.name), k, None, "{}".into()),
        ("POST", format!("/v1alpha1/namespaces/{}/leases/steady/acquire/", h.ns.name), k, None, "{}".into()),
        ("POST", format!("/v1alpha1/namespaces/{}/leases//acquire", h.ns.name), k, None, "{}".into()),
        ("POST", "/v1alpha1/namespaces//leases/steady/acquire".into(), k, None, "{}".into()),
        ("POST", "/v1alpha1/namespaces/a-very-long-namespace-name-that-is-far-longer-than-sixty-three-chars/leases/x/acquire".into(), Some(KEY_ANY), None, r#"{"holder":"any","ttlSeconds":5}"#.into()),
        ("GET", h.lease_path("steady", "/release"), k, None, "".into()),
        ("PATCH", h.lease_path("steady", ""), k, None, "{}".into()),
        ("GET", h.lease_path("nothing-here", ""), k, None, "".into()),
        ("GET", h.lease_path("nothing-here", "/watch"), k, None, "".into()),
        // headers
        ("POST", acquire.clone(), None, None, r#"{"holder":"east","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), Some("k\u{e9}y"), None, r#"{"holder":"east","ttlSeconds":5}"#.into()),
        ("POST", acquire.clone(), Some(KEY_WEST), None, r#"{"holder":"east/a","ttlSeconds":5}"#.into()),
        ("GET", "/v1alpha1/leases".into(), None, None, "".into()),
        // lease rules answering 4xx without a change
        ("POST", release.clone(), k, None, r#"{"holder":"east/a","fencingToken":99}"#.into()),
        ("POST", release.clone(), k, None, r#"{"holder":"east/b","fencingToken":1}"#.into()),
    ];
    cases.push(("POST", acquire.clone(), k, Some(("content-type", "text/plain")), "holder=east".into()));
    assert!(cases.len() >= 50, "only {} cases", cases.len());

    for (method, path, key, header, body) in &cases {
        let mut request = Request::builder().method(*method).uri(path.as_str());
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some((name, value)) = header {
            request = request.header(*name, *value);
        }
        let reply = h.send(request.body(Body::from(body.clone())).unwrap()).await;
        let context = format!("{method} {path:.120} {body:.80}: {} {:.200}", reply.status, reply.text);
        assert!(reply.status.is_client_error(), "{context}");
        assert_eq!(reply.headers["content-type"], "application/json", "{context}");
        assert!(!reply.error().is_empty(), "{context}");
    }

    let after = api.get("steady").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "steady changed");
    let names: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|l| l.metadata.name).collect();
    assert_eq!(names, ["steady"], "a malformed request created a lease");
}

/// An app on `client`, serving `namespaces`, with the `any` tenant; not waited for.
fn app_on(
    client: kube::Client,
    namespaces: &[String],
) -> (std::sync::Arc<berth_apiserver::App>, tokio::sync::watch::Sender<bool>) {
    let keys = format!("any:{}\n", common::sha256_hex(KEY_ANY));
    let keys = std::sync::Arc::new(berth_apiserver::auth::KeySet::parse(&keys).unwrap());
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let metrics = std::sync::Arc::new(berth_apiserver::metrics::Metrics::default());
    (berth_apiserver::App::start(client, namespaces, keys, metrics, shutdown, Default::default()), shutdown_tx)
}

async fn oneshot(
    app: &std::sync::Arc<berth_apiserver::App>,
    request: Request<Body>,
) -> (u16, axum::http::HeaderMap, String) {
    use tower::ServiceExt;
    let response = berth_apiserver::router(app.clone()).oneshot(request).await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn unreachable_kube_apiserver_means_not_ready() {
    // Nothing listens on port 1: the reflector never syncs.
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let (app, _shutdown) = app_on(kube::Client::try_from(config).unwrap(), &[]);
    let readyz = oneshot(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((readyz.0, readyz.2.as_str()), (503, "not ready\n"));
    let healthz = oneshot(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((healthz.0, healthz.2.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn reads_before_the_cache_has_synced_answer_503_not_absent() {
    // Nothing listens on port 1: the cache never lists, so it cannot tell
    // whether a lease exists. A 404 would end a client's watch of a lease
    // that a restarted apiserver simply has not listed yet.
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let (app, _shutdown) = app_on(kube::Client::try_from(config).unwrap(), &[]);
    for path in [
        "/v1alpha1/namespaces/any/leases/l",
        "/v1alpha1/namespaces/any/leases/l/watch",
        "/v1alpha1/namespaces/any/leases",
        "/v1alpha1/namespaces/any/leases?watch=1",
        "/v1alpha1/leases",
        "/v1alpha1/leases?watch=1",
    ] {
        let request = Request::get(path).header("authorization", format!("Bearer {KEY_ANY}")).body(Body::empty());
        let (status, headers, body) = oneshot(&app, request.unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (503, r#"{"error":"the lease cache is still syncing, retry later"}"#),
            "{path}"
        );
        assert_eq!(headers["retry-after"], "1", "{path}");
    }
}

#[tokio::test]
async fn writes_while_kube_apiserver_is_down_answer_503_with_retry_after() {
    // A control plane of this test's own: its kube-apiserver is stopped below.
    let cluster = berth_testenv::clusters::Cluster::up(&format!("unreachable-{}", std::process::id())).unwrap();
    let client = cluster.client_with_crd().await.unwrap();
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "unreachable"}})).unwrap();
    kube::Api::all(client.clone()).create(&Default::default(), &ns).await.unwrap();
    let (app, _shutdown) = app_on(client, &[]);
    let acquire = |name: &str| {
        Request::post(format!("/v1alpha1/namespaces/unreachable/leases/{name}/acquire"))
            .header("authorization", format!("Bearer {KEY_ANY}"))
            .header("x-request-id", "req-503")
            .body(Body::from(r#"{"holder":"any","ttlSeconds":30}"#))
            .unwrap()
    };
    let (status, _, body) = oneshot(&app, acquire("served")).await;
    assert_eq!(status, 200, "{body}");

    cluster.stop_kube_apiserver().unwrap();
    let (status, headers, body) = oneshot(&app, acquire("stranded")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-request-id"], "req-503");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"error": "kube-apiserver is unavailable, retry later"})
    );
    cluster.down().unwrap();
}

#[tokio::test]
async fn readyz_turns_503_when_shutdown_starts() {
    let h = Harness::new("contract-ready").await;
    let (app, shutdown) = app_on(h.ns.client.clone(), std::slice::from_ref(&h.ns.name));
    berth_testenv::eventually("ready", std::time::Duration::from_secs(30), || async {
        (oneshot(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await.0 == 200).then_some(())
    })
    .await;
    shutdown.send(true).unwrap();
    let readyz = oneshot(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((readyz.0, readyz.2.as_str()), (503, "not ready\n"));
}

#[tokio::test]
async fn acquire_in_a_missing_namespace_is_404() {
    let client = berth_testenv::client().await;
    berth_testenv::install_crd(&client).await;
    let ghost = format!("ghost-{}", std::process::id());
    let (app, _shutdown) = app_on(client, std::slice::from_ref(&ghost));
    let request = Request::post(format!("/v1alpha1/namespaces/{ghost}/leases/l/acquire"))
        .header("authorization", format!("Bearer {KEY_ANY}"))
        .body(Body::from(r#"{"holder":"any","ttlSeconds":5}"#))
        .unwrap();
    let (status, _, body) = oneshot(&app, request).await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"namespace not found"}"#));
}

#[tokio::test]
async fn several_namespace_flags_serve_exactly_those_namespaces() {
    let (a, b) = (
        berth_testenv::TestNamespace::new("contract-ns-a").await,
        berth_testenv::TestNamespace::new("contract-ns-b").await,
    );
    let (app, _shutdown) = app_on(a.client.clone(), &[b.name.clone(), a.name.clone()]);
    berth_testenv::eventually("the cache syncs", std::time::Duration::from_secs(30), || async {
        app.cache.is_ready().then_some(())
    })
    .await;
    let post = |ns: &str| {
        Request::post(format!("/v1alpha1/namespaces/{ns}/leases/shared-name/acquire"))
            .header("authorization", format!("Bearer {KEY_ANY}"))
            .body(Body::from(r#"{"holder":"any","ttlSeconds":60}"#))
            .unwrap()
    };
    for ns in [&a.name, &b.name] {
        let (status, _, body) = oneshot(&app, post(ns)).await;
        assert_eq!(status, 200, "{ns}: {body}");
    }
    let (status, _, body) = oneshot(&app, post("default")).await;
    assert_eq!((status, body.as_str()), (403, r#"{"error":"namespace is not served by this apiserver"}"#));

    let list = Request::get("/v1alpha1/leases")
        .header("authorization", format!("Bearer {KEY_ANY}"))
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = oneshot(&app, list).await;
    let items: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seen: Vec<(String, String)> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["namespace"].as_str().unwrap().to_owned(), i["name"].as_str().unwrap().to_owned()))
        .collect();
    let mut expected = vec![(a.name.clone(), "shared-name".to_owned()), (b.name.clone(), "shared-name".to_owned())];
    expected.sort();
    assert_eq!(seen, expected, "sorted by namespace, then name");
}
