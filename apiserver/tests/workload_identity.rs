//! Workload identity against the real control plane: service-account tokens
//! from the TokenRequest API, checked offline (JWT, keys from the issuer's
//! OIDC discovery) or by TokenReview, a member cluster's issuer (a second
//! control plane), refusals, key rotation, and namespace limits. The apiserver
//! binary runs with `--authentication-config`. Run `cargo build -p
//! berth-apiserver` first.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_api::BerthLease;
use berth_client::sse::SseParser;
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::identity::ControlPlane;
use common::{https_client, post_json};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The tenant the service accounts map to.
const TENANT: &str = "east";

/// A config file of our own, written in one step (JSON is YAML).
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(config: &Value) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "berth-authn-{}-{}.json",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = Self(path);
        file.write(&config.to_string());
        file
    }

    fn write(&self, text: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text).expect("config writes");
        std::fs::rename(&tmp, &self.0).expect("config renames");
    }

    fn arg(&self) -> String {
        format!("--authentication-config={}", self.0.display())
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `jwt[]` entry trusting `cp`'s issuer, keys through its OIDC discovery,
/// mapping service account `account` (`<ns>:<name>`) to [`TENANT`] in `namespaces`.
fn jwt_issuer(cp: &ControlPlane, account: &str, namespaces: &[&str]) -> Value {
    json!({
        "issuer": {"url": cp.issuer(), "audiences": ["berth"], "certificateAuthority": cp.ca_pem()},
        "tenants": [{"serviceAccount": account, "tenant": TENANT, "namespaces": namespaces}],
    })
}

fn config(jwt: Vec<Value>, token_review: Option<Value>) -> Value {
    let mut config =
        json!({"apiVersion": "berth.skaphos.io/v1alpha1", "kind": "AuthenticationConfiguration", "jwt": jwt});
    if let Some(review) = token_review {
        config["tokenReview"] = review;
    }
    config
}

/// An apiserver with a keys file (tenant `keys`, every namespace) and `file`.
fn start(file: &ConfigFile) -> ApiServer {
    ApiServer::start(vec![Tenant::new("keys", &[])], &[], &[&file.arg()])
}

struct Caller {
    http: reqwest::Client,
    url: String,
}

impl Caller {
    fn new(server: &ApiServer) -> Self {
        Self { http: https_client(&server.ca_file), url: server.url.clone() }
    }

    async fn post(&self, token: &str, ns: &str, name: &str, verb: &str, body: Value) -> (u16, Value) {
        post_json(&self.http, &format!("{}/v1alpha1/namespaces/{ns}/leases/{name}/{verb}", self.url), token, &body)
            .await
    }

    async fn acquire(&self, token: &str, ns: &str, name: &str) -> (u16, Value) {
        self.post(token, ns, name, "acquire", json!({"holder": "east/worker", "ttlSeconds": 60})).await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.expect("GET");
        let status = response.status().as_u16();
        // A watch that was let in streams forever: its status is the answer.
        if response.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
            return (status, Value::Null);
        }
        (status, serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null))
    }
}

/// [`berth_testenv::eventually_showing`] for a yes-or-no `check`; a failure
/// shows the server log. 90 s is only a failure bound.
async fn until<F: Future<Output = bool>>(server: &ApiServer, what: &str, check: impl Fn() -> F) {
    berth_testenv::eventually_showing(
        what,
        Duration::from_secs(90),
        || server.log(),
        || {
            let holds = check();
            async move { holds.await.then_some(()) }
        },
    )
    .await;
}

async fn lease(ns: &TestNamespace, name: &str) -> Option<BerthLease> {
    ns.api::<BerthLease>().get_opt(name).await.expect("lease reads")
}

/// Acquire, renew, get and release with `token`, each checked on the server.
async fn holds_a_lease(caller: &Caller, token: &str, ns: &TestNamespace) {
    let (status, body) = caller.acquire(token, &ns.name, "job").await;
    assert_eq!((status, &body["acquired"]), (200, &json!(true)), "{body}");
    let token_number = body["fencingToken"].as_i64().expect("a fencing token");
    let renew = json!({"holder": "east/worker", "fencingToken": token_number, "ttlSeconds": 60});
    let (status, body) = caller.post(token, &ns.name, "job", "renew", renew).await;
    assert_eq!((status, &body["acquired"]), (200, &json!(true)), "{body}");
    let held = lease(ns, "job").await.expect("the lease exists");
    let labels = held.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(berth_api::crd::TENANT_LABEL).map(String::as_str), Some(TENANT));
    assert_eq!(held.status.expect("status").holders[0].identity, "east/worker");
    let release = json!({"holder": "east/worker", "fencingToken": token_number});
    let (status, _) = caller.post(token, &ns.name, "job", "release", release).await;
    assert_eq!(status, 204);
    let released = lease(ns, "job").await.expect("the lease exists");
    assert!(released.status.expect("status").holders.is_empty());
}

#[tokio::test]
async fn service_account_token_holds_a_lease_through_jwt_keys_from_discovery() {
    let ns = TestNamespace::new("wi-jwt").await;
    let cp = ControlPlane::coordination();
    cp.create_service_account(&ns.name, "holder");
    let file = ConfigFile::new(&config(vec![jwt_issuer(&cp, &format!("{}:holder", ns.name), &[&ns.name])], None));
    let server = start(&file);
    holds_a_lease(&Caller::new(&server), &cp.token(&ns.name, "holder", "berth", None), &ns).await;
}

#[tokio::test]
async fn service_account_token_holds_a_lease_through_token_review() {
    let ns = TestNamespace::new("wi-review").await;
    let cp = ControlPlane::coordination();
    cp.create_service_account(&ns.name, "holder");
    let review = json!({"tenants": [{"serviceAccount": format!("{}:holder", ns.name), "tenant": TENANT}]});
    let file = ConfigFile::new(&config(vec![], Some(review)));
    let server = start(&file);
    let caller = Caller::new(&server);
    holds_a_lease(&caller, &cp.token(&ns.name, "holder", "berth", None), &ns).await;
    // TokenReview asks for audience berth: a token for another audience is refused.
    let other = cp.token(&ns.name, "holder", "not-berth", None);
    assert_eq!(caller.acquire(&other, &ns.name, "job").await.0, 401);
}

/// A token signed with `key` (PEM) under `header`, with these claims.
fn mint(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("token signs")
}

/// Unpadded base64url, as JWTs use.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn fresh_rsa_key(dir: &Path) -> Vec<u8> {
    let path = dir.join("stranger.key");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genrsa failed");
    std::fs::read(&path).expect("key reads")
}

#[tokio::test]
async fn refused_tokens_answer_401_and_change_nothing() {
    let ns = TestNamespace::new("wi-refused").await;
    let cp = ControlPlane::coordination();
    cp.create_service_account(&ns.name, "holder");
    let account = format!("{}:holder", ns.name);
    let file = ConfigFile::new(&config(vec![jwt_issuer(&cp, &account, &[&ns.name])], None));
    let server = start(&file);
    let caller = Caller::new(&server);

    let good = cp.token(&ns.name, "holder", "berth", None);
    let (status, body) = caller.acquire(&good, &ns.name, "job").await;
    assert_eq!(status, 200, "{body}");
    let before = lease(&ns, "job").await.expect("lease exists").metadata.resource_version;

    let kid = jsonwebtoken::decode_header(&good).expect("header").kid.expect("kube-apiserver names its key");
    let now = chrono::Utc::now().timestamp();
    let claims = |iss: &str, exp: i64| {
        json!({"iss": iss, "aud": ["berth"], "sub": format!("system:serviceaccount:{}:holder", ns.name),
               "iat": now, "nbf": now, "exp": exp})
    };
    let issuer_key = EncodingKey::from_rsa_pem(&cp.signing_key_pem()).expect("issuer key parses");
    let rs256 = |kid: &str| Header { kid: Some(kid.to_owned()), ..Header::new(Algorithm::RS256) };
    let payload = good.split('.').nth(1).expect("payload").to_owned();
    let signature = good.rsplit('.').next().expect("signature");
    let mid = signature.len() / 2;
    let flipped = if &signature[mid..=mid] == "A" { "B" } else { "A" };
    let stranger = EncodingKey::from_rsa_pem(&fresh_rsa_key(&server.dir)).expect("stranger key parses");

    let refused = [
        ("expired", mint(rs256(&kid), &claims(&cp.issuer(), now - 120), &issuer_key)),
        ("wrong audience", cp.token(&ns.name, "holder", "not-berth", None)),
        ("unknown issuer", mint(rs256(&kid), &claims("https://127.0.0.1:1", now + 600), &issuer_key)),
        ("bad signature", format!("{}{flipped}{}", &good[..good.len() - signature.len() + mid], &signature[mid + 1..])),
        ("signed by another key", mint(rs256(&kid), &claims(&cp.issuer(), now + 600), &stranger)),
        (
            "alg none",
            format!("{}.{payload}.", b64(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string().as_bytes())),
        ),
        (
            "HS256 signed with the public key",
            mint(
                Header { kid: Some(kid.clone()), ..Header::new(Algorithm::HS256) },
                &claims(&cp.issuer(), now + 600),
                &EncodingKey::from_secret(&cp.public_key_pem()).expect("HMAC key"),
            ),
        ),
    ];
    for (what, token) in &refused {
        for verb in ["acquire", "renew", "release"] {
            let body = json!({"holder": "east/worker", "fencingToken": 1, "ttlSeconds": 60});
            let body = if verb == "acquire" { json!({"holder": "east/worker", "ttlSeconds": 60}) } else { body };
            let (status, answer) = caller.post(token, &ns.name, "job", verb, body).await;
            assert_eq!((status, &answer["error"]), (401, &json!("unauthorized")), "{what} on {verb}: {answer}");
        }
        assert_eq!(caller.get(token, &format!("/v1alpha1/namespaces/{}/leases/job", ns.name)).await.0, 401, "{what}");
    }

    // A key id the issuer does not publish is refused after the keys were
    // fetched again: wait for that fetch (rate-limited) while it is refused.
    let unknown_kid = mint(rs256("no-such-key"), &claims(&cp.issuer(), now + 600), &stranger);
    let fetches = || server.log().matches("fetched the issuer's signing keys").count();
    let first = fetches();
    until(&server, "a refetch of the issuer's keys for an unknown kid", || async {
        assert_eq!(caller.acquire(&unknown_kid, &ns.name, "job").await.0, 401, "unknown kid");
        fetches() > first
    })
    .await;
    assert_eq!(caller.acquire(&unknown_kid, &ns.name, "job").await.0, 401, "unknown kid after the refetch");

    let after = lease(&ns, "job").await.expect("lease exists").metadata.resource_version;
    assert_eq!(before, after, "a refused token changed the lease");
}

#[tokio::test]
async fn a_member_clusters_tokens_follow_its_issuer_configuration_and_key_rotation() {
    let ns = TestNamespace::new("wi-member").await;
    let coordination = ControlPlane::coordination();
    // A member cluster of its own: its kube-apiserver restarts below.
    let east = ControlPlane::member("auth-east");
    let operator = format!("berth-system-{}", std::process::id());
    east.create_service_account(&operator, "berth-operator");
    let account = format!("{operator}:berth-operator");
    let east_token = east.token(&operator, "berth-operator", "berth", None);

    let without_east = config(vec![jwt_issuer(&coordination, "nobody:nobody", &[&ns.name])], None);
    let file = ConfigFile::new(&without_east);
    let server = start(&file);
    let caller = Caller::new(&server);
    assert_eq!(caller.acquire(&east_token, &ns.name, "job").await.0, 401, "an issuer that is not configured");

    // Configuring east's issuer is picked up by the reload, without a restart.
    let with_east = config(
        vec![jwt_issuer(&coordination, "nobody:nobody", &[&ns.name]), jwt_issuer(&east, &account, &[&ns.name])],
        None,
    );
    file.write(&with_east.to_string());
    until(&server, "east's token accepted", || async { caller.acquire(&east_token, &ns.name, "job").await.0 == 200 })
        .await;

    // A bad version is refused and the one in force stays.
    file.write("apiVersion: berth.skaphos.io/v1alpha1\nkind: AuthenticationConfiguration\njwt: [{issuer: {}}]\n");
    until(&server, "the bad configuration reported", || async {
        server.log().contains("refused the changed authentication configuration")
    })
    .await;
    assert_eq!(caller.acquire(&east_token, &ns.name, "job").await.0, 200);

    // East's kube-apiserver restarts signing with a new key: its new tokens
    // name a key Berth has not fetched yet, and are accepted after a refetch.
    file.write(&with_east.to_string());
    let old_kid = jsonwebtoken::decode_header(&east_token).unwrap().kid;
    east.rotate_signing_key();
    let rotated = east.token(&operator, "berth-operator", "berth", None);
    assert_ne!(jsonwebtoken::decode_header(&rotated).unwrap().kid, old_kid, "the signing key did not change");
    until(&server, "a token of the rotated key accepted", || async {
        caller.acquire(&rotated, &ns.name, "job").await.0 == 200
    })
    .await;
    assert_eq!(caller.acquire(&east_token, &ns.name, "job").await.0, 200, "the old key is still published");

    // Removing east's issuer refuses its tokens again.
    file.write(&without_east.to_string());
    until(&server, "east's token refused", || async { caller.acquire(&rotated, &ns.name, "job").await.0 == 401 }).await;
}

/// Reads Server-Sent Events into `seen` (their JSON data) until one matches `done`; 30 s at most.
async fn read_events(response: &mut reqwest::Response, seen: &mut Vec<Value>, done: impl Fn(&Value) -> bool) {
    let mut parser = SseParser::new();
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let chunk = tokio::time::timeout_at(limit, response.chunk()).await.expect("an event within 30 s");
        for event in parser.push(&chunk.expect("the stream reads").expect("the stream goes on")) {
            let value: Value = serde_json::from_str(&event.data).expect("event data is JSON");
            let finished = done(&value);
            seen.push(value);
            if finished {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_service_account_limited_to_one_namespace_is_refused_on_every_route_elsewhere() {
    let allowed = TestNamespace::new("wi-allowed").await;
    let other = TestNamespace::new("wi-other").await;
    let cp = ControlPlane::coordination();
    cp.create_service_account(&allowed.name, "holder");
    let file =
        ConfigFile::new(&config(vec![jwt_issuer(&cp, &format!("{}:holder", allowed.name), &[&allowed.name])], None));
    let server = ApiServer::start(vec![Tenant::new(TENANT, &[])], &[], &[&file.arg()]);
    let caller = Caller::new(&server);
    let token = cp.token(&allowed.name, "holder", "berth", None);

    // The same tenant, with a key allowed everywhere, holds a lease in each namespace.
    let key = server.key(TENANT).to_owned();
    for ns in [&allowed.name, &other.name] {
        assert_eq!(caller.acquire(&key, ns, "elsewhere").await.0, 200);
    }
    let before = lease(&other, "elsewhere").await.expect("lease exists").metadata.resource_version;

    let forbidden = json!("not authorized for this namespace");
    for (verb, body) in [
        ("acquire", json!({"holder": "east/worker", "ttlSeconds": 60})),
        ("renew", json!({"holder": "east/worker", "fencingToken": 1, "ttlSeconds": 60})),
        ("release", json!({"holder": "east/worker", "fencingToken": 1})),
    ] {
        let (status, answer) = caller.post(&token, &other.name, "elsewhere", verb, body).await;
        assert_eq!((status, &answer["error"]), (403, &forbidden), "{verb}: {answer}");
    }
    let ns = &other.name;
    for path in [
        format!("/v1alpha1/namespaces/{ns}/leases/elsewhere"),
        format!("/v1alpha1/namespaces/{ns}/leases"),
        format!("/v1alpha1/namespaces/{ns}/leases/elsewhere/watch"),
        format!("/v1alpha1/namespaces/{ns}/leases?watch=1"),
    ] {
        let (status, answer) = caller.get(&token, &path).await;
        assert_eq!((status, &answer["error"]), (403, &forbidden), "GET {path}: {answer}");
    }
    let after = lease(&other, "elsewhere").await.expect("lease exists").metadata.resource_version;
    assert_eq!(before, after, "a forbidden call changed the lease");

    // The collection watch of every lease shows the allowed namespace only,
    // even when a lease elsewhere changes first.
    let mut watch =
        caller.http.get(format!("{}/v1alpha1/leases?watch=1", caller.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(watch.status(), 200);
    let mut seen = Vec::new();
    let lease_in = |ns: &str| {
        let ns = ns.to_owned();
        move |event: &Value| event["namespace"] == json!(ns) && event["name"] == json!("elsewhere")
    };
    read_events(&mut watch, &mut seen, lease_in(&allowed.name)).await;
    for ns in [&other.name, &allowed.name] {
        assert_eq!(caller.acquire(&key, ns, "elsewhere").await.0, 200, "renewing acquire in {ns}");
    }
    let renewed = seen.len();
    read_events(&mut watch, &mut seen, lease_in(&allowed.name)).await;
    assert!(seen.len() > renewed);
    // Lease events carry a namespace (the end of the initial list does not).
    let leases: Vec<_> = seen.iter().filter(|e| e.get("namespace").is_some()).collect();
    assert!(
        leases.iter().all(|e| e["namespace"] == json!(allowed.name)),
        "the watch showed another namespace: {seen:?}"
    );
    drop(watch);
    // Every lease the tenant may see lists only the allowed namespace.
    until(&server, "the allowed lease listed", || async {
        caller.get(&token, "/v1alpha1/leases").await.1["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    let (status, list) = caller.get(&token, "/v1alpha1/leases").await;
    assert_eq!(status, 200);
    let namespaces: Vec<_> = list["items"].as_array().unwrap().iter().map(|l| l["namespace"].clone()).collect();
    assert_eq!(namespaces, [json!(allowed.name)], "{list}");
    // In its namespace the token works on every route.
    let ns = &allowed.name;
    assert_eq!(caller.get(&token, &format!("/v1alpha1/namespaces/{ns}/leases/elsewhere")).await.0, 200);
    assert_eq!(caller.get(&token, &format!("/v1alpha1/namespaces/{ns}/leases")).await.0, 200);
    assert_eq!(caller.get(&token, &format!("/v1alpha1/namespaces/{ns}/leases/elsewhere/watch")).await.0, 200);
    assert_eq!(caller.acquire(&token, ns, "mine").await.0, 200);
}
