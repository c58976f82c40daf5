//! The `apiserver` binary as a process, over HTTPS, on the real control plane:
//! the whole lifecycle, contention between two replicas, plain HTTP refused,
//! keys-file reload, metrics and graceful shutdown.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::BerthLease;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::{TestNamespace, eventually};
use common::{https_client, post_json, tls_client_config};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::PostParams;
use serde::Deserialize;
use serde_json::json;

fn url(server: &ApiServer, ns: &str, name: &str, verb: &str) -> String {
    format!("{}/v1alpha1/namespaces/{ns}/leases/{name}/{verb}", server.url)
}

#[tokio::test]
async fn whole_lifecycle_over_https_with_takeover_after_expiry() {
    let ns = TestNamespace::new("proc-life").await;
    let server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let client = https_client(&server.ca_file);
    let key = server.key("east").to_owned();
    let at = |verb: &str| url(&server, &ns.name, "life", verb);

    let (status, first) =
        post_json(&client, &at("acquire"), &key, &json!({"holder": "east/a", "ttlSeconds": 30})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["acquired"].as_bool(), first["holder"].as_str()), (Some(true), Some("east/a")));
    assert_eq!(first["fencingToken"], 1);

    // Acquire again by the live holder is a renew: same token and acquiredAt, later expiry.
    let (_, again) = post_json(&client, &at("acquire"), &key, &json!({"holder": "east/a", "ttlSeconds": 60})).await;
    assert_eq!((again["acquired"].as_bool(), again["fencingToken"].as_i64()), (Some(true), Some(1)), "{again}");
    assert_eq!(again["acquiredAt"], first["acquiredAt"]);
    assert!(again["expiresAt"].as_str() > first["expiresAt"].as_str());

    let (_, renewed) =
        post_json(&client, &at("renew"), &key, &json!({"holder": "east/a", "fencingToken": 1, "ttlSeconds": 30})).await;
    assert_eq!((renewed["acquired"].as_bool(), renewed["fencingToken"].as_i64()), (Some(true), Some(1)));

    // Held elsewhere: the answer names the holder and leaves out the token.
    let (status, refused) =
        post_json(&client, &at("acquire"), &key, &json!({"holder": "east/b", "ttlSeconds": 30})).await;
    assert_eq!(status, 200);
    assert_eq!((refused["acquired"].as_bool(), refused["holder"].as_str()), (Some(false), Some("east/a")));
    assert!(refused.get("fencingToken").is_none(), "{refused}");

    let (status, _) = post_json(&client, &at("release"), &key, &json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(status, 204);
    let (_, second) = post_json(&client, &at("acquire"), &key, &json!({"holder": "east/b", "ttlSeconds": 1})).await;
    assert_eq!((second["acquired"].as_bool(), second["fencingToken"].as_i64()), (Some(true), Some(2)), "{second}");

    // east/b lets its 1 s TTL run out; east/c takes over with the next token.
    let expires_at: chrono::DateTime<chrono::Utc> = second["expiresAt"].as_str().unwrap().parse().unwrap();
    berth_testenv::eventually("east/b's expiresAt passes", Duration::from_secs(10), || async {
        (chrono::Utc::now() > expires_at).then_some(())
    })
    .await;
    let (_, taken) = post_json(&client, &at("acquire"), &key, &json!({"holder": "east/c", "ttlSeconds": 30})).await;
    assert_eq!((taken["acquired"].as_bool(), taken["fencingToken"].as_i64()), (Some(true), Some(3)), "{taken}");
    let (_, late) =
        post_json(&client, &at("renew"), &key, &json!({"holder": "east/b", "fencingToken": 2, "ttlSeconds": 30})).await;
    assert_eq!(late["acquired"], false, "the expired holder must stop: {late}");
    let status = ns.api::<BerthLease>().get("life").await.unwrap().status.unwrap();
    assert_eq!((status.fencing_token, status.transitions), (3, 3));

    // Every response carries a request id; the core answers are JSON.
    let response = client.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 32);
    assert_eq!(response.text().await.unwrap(), "ok\n");

    // Metrics: requests by route/method/status, outcomes, writes, cache size.
    let metrics = client.get(format!("{}/metrics", server.metrics_url)).send().await.unwrap().text().await.unwrap();
    for needle in [
        r#"berth_apiserver_http_request_duration_seconds_count{route="/v1alpha1/namespaces/{namespace}/leases/{name}/acquire",method="POST",status="200"} 5"#,
        r#"berth_apiserver_lease_outcomes_total{operation="acquire",outcome="granted"} 3"#,
        r#"berth_apiserver_lease_outcomes_total{operation="acquire",outcome="held_by_other"} 1"#,
        r#"berth_apiserver_lease_outcomes_total{operation="renew",outcome="lost"} 1"#,
        r#"berth_apiserver_kube_writes_total{verb="create",result="ok"} 1"#,
        "berth_apiserver_cached_leases 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
    assert_eq!(berth_testenv::apiserver::http_status(&server.health_url, "/readyz"), Some(200));
    let log = server.log();
    let lease = format!("{}/life", ns.name);
    assert!(log.contains(&lease) && log.contains("granted") && log.contains("tenant"), "{log:.3000}");
    assert!(!log.contains(&key), "the key leaked into the log");
}

#[tokio::test]
async fn writes_beyond_the_limit_are_shed_with_503_and_retry_after_and_write_nothing() {
    const LEASES: usize = 24;
    let ns = TestNamespace::new("proc-shed").await;
    let limits = ["--max-concurrent-writes=1", "--max-queued-writes=0"];
    let server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &limits);
    let client = https_client(&server.ca_file);
    let key = server.key("east").to_owned();
    let api = ns.api::<BerthLease>();
    // One at a time, nothing waits for the single write slot.
    let mut granted = Vec::new();
    for i in 0..LEASES {
        let name = format!("shed-{i}");
        let (status, body) = post_json(
            &client,
            &url(&server, &ns.name, &name, "acquire"),
            &key,
            &json!({"holder": "east/a", "ttlSeconds": 60}),
        )
        .await;
        assert_eq!((status, body["acquired"].as_bool()), (200, Some(true)), "{name}: {body}");
        granted.push((name, body["expiresAt"].as_str().unwrap().to_owned()));
    }

    // All renews at once: one writes, the others find the slot free or are shed.
    let (mut renewed, mut shed) = (0, 0);
    for _round in 0..5 {
        let mut versions = HashMap::new();
        for (name, _) in &granted {
            versions.insert(name.clone(), api.get(name).await.unwrap().metadata.resource_version);
        }
        let renews = granted.iter().map(|(name, _)| {
            let request = client
                .post(url(&server, &ns.name, name, "renew"))
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(json!({"holder": "east/a", "fencingToken": 1, "ttlSeconds": 120}).to_string())
                .send();
            async move {
                let response = request.await.unwrap();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (response.status().as_u16(), retry_after, response.text().await.unwrap())
            }
        });
        let answers = futures::future::join_all(renews).await;
        for ((name, acquired_expiry), (status, retry_after, body)) in granted.iter().zip(answers) {
            match status {
                200 => {
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!((body["acquired"].as_bool(), body["fencingToken"].as_i64()), (Some(true), Some(1)));
                    assert!(body["expiresAt"].as_str().unwrap() > acquired_expiry.as_str(), "{name}: {body}");
                    renewed += 1;
                }
                503 => {
                    assert_eq!(body, r#"{"error":"overloaded, retry later"}"#, "{name}");
                    // Asked back within the first half of the tenure left (120 s at most).
                    let seconds: u32 = retry_after.as_deref().expect("Retry-After").parse().unwrap();
                    assert!((1..=60).contains(&seconds), "{name}: Retry-After {seconds} s");
                    let now = api.get(name).await.unwrap().metadata.resource_version;
                    assert_eq!(now, versions[name], "{name}: a shed renew wrote");
                    shed += 1;
                }
                other => panic!("{name}: status {other}: {body}"),
            }
        }
        if renewed > 0 && shed > 0 {
            break;
        }
    }
    assert!(renewed > 0 && shed > 0, "renewed {renewed}, shed {shed}");

    let metrics = client.get(format!("{}/metrics", server.metrics_url)).send().await.unwrap().text().await.unwrap();
    let counted = format!(r#"berth_apiserver_shed_requests_total{{operation="renew"}} {shed}"#);
    assert!(metrics.contains(&counted), "{counted} missing from:\n{metrics}");
    assert!(server.log().contains("overloaded"), "no warning in the log");
}

/// Sends a plain-HTTP request to the TLS port and returns whatever comes back.
fn plain_http_exchange(base: &str) -> Vec<u8> {
    let addr = base.strip_prefix("https://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may hang up after the first bytes that are not TLS, so a
    // write can fail with a broken pipe: what matters is what comes back.
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails() {
    // No namespace of its own: the CRD must still exist before the cache can sync.
    berth_testenv::install_crd(&berth_testenv::client().await).await;
    let server = ApiServer::start(vec![Tenant::new("east", &[])], &[], &[]);
    let answer = plain_http_exchange(&server.url);
    assert!(!answer.starts_with(b"HTTP/"), "the TLS port answered plain HTTP: {:?}", String::from_utf8_lossy(&answer));
    let client = https_client(&server.ca_file);
    let plain = client.get(server.url.replace("https://", "http://") + "/healthz").send().await;
    assert!(plain.is_err(), "{plain:?}");
    // The same port over TLS works.
    let ok = client.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

async fn list_status(client: &reqwest::Client, server: &ApiServer, key: &str) -> u16 {
    let response = client.get(format!("{}/v1alpha1/leases", server.url)).bearer_auth(key).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn keys_file_reload_takes_effect_and_a_bad_file_keeps_the_old_keys() {
    // No namespace of its own: the CRD must still exist before the cache can sync.
    berth_testenv::install_crd(&berth_testenv::client().await).await;
    let mut server = ApiServer::start(vec![Tenant::new("east", &[])], &[], &[]);
    let client = https_client(&server.ca_file);
    let old_key = server.key("east").to_owned();
    assert_eq!(list_status(&client, &server, &old_key).await, 200);

    let rotated = Tenant::new("east", &[]);
    let new_key = rotated.key.clone();
    server.write_keys(vec![rotated, Tenant::new("north", &["n1"])]);
    eventually("the new key works", Duration::from_secs(10), || async {
        (list_status(&client, &server, &new_key).await == 200).then_some(())
    })
    .await;
    assert_eq!(list_status(&client, &server, &old_key).await, 401, "the removed key still works");

    // A bad file is refused, logged, and the keys in force stay.
    std::fs::write(&server.keys_file, "east:not-a-hash\n").unwrap();
    eventually("the bad file is reported", Duration::from_secs(10), || async {
        server.log().contains("refused the changed API keys file").then_some(())
    })
    .await;
    assert_eq!(list_status(&client, &server, &new_key).await, 200);
    assert_eq!(list_status(&client, &server, &old_key).await, 401);
}

#[tokio::test]
async fn sigterm_ends_waiting_requests_and_exits_cleanly() {
    let ns = TestNamespace::new("proc-term").await;
    let mut server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let client = https_client(&server.ca_file);
    let key = server.key("east").to_owned();
    let at = url(&server, &ns.name, "term", "acquire");
    let (_, held) = post_json(&client, &at, &key, &json!({"holder": "east/a", "ttlSeconds": 60})).await;
    assert_eq!(held["acquired"], true);

    // It waits far longer than the 10 s drain, so only the shutdown signal can
    // answer it: without it the drain would close the connection unanswered.
    let waiter = {
        let (client, at, key) = (client.clone(), at.clone(), key.clone());
        tokio::spawn(async move {
            post_json(&client, &at, &key, &json!({"holder": "east/b", "ttlSeconds": 60, "waitSeconds": 300})).await
        })
    };
    eventually("the second acquire is refused and waits", Duration::from_secs(30), || async {
        (server.metric("berth_apiserver_waiting_acquires") == Some(1.0)).then_some(())
    })
    .await;
    assert!(!waiter.is_finished());
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.terminate();
        (exit, server.log())
    })
    .await
    .unwrap();
    let (status, answer) = waiter.await.unwrap();
    assert_eq!((status, answer["acquired"].as_bool()), (200, Some(false)), "the waiting request was cut off");
    assert!(exit.0.success(), "exit {:?}:\n{}", exit.0, exit.1);
    assert!(exit.1.contains("shutting down"), "{}", exit.1);
}

/// What the 20 clients saw, checked as they go.
#[derive(Default)]
struct Ledger {
    /// Lease → the client that holds it now.
    holder: HashMap<String, usize>,
    /// Lease → tokens in the order they were granted.
    tokens: HashMap<String, Vec<i64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apiservers_give_each_lease_to_one_of_twenty_contending_clients_at_a_time() {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 6;
    const LEASES: [&str; 3] = ["alpha", "beta", "gamma"];
    let ns = TestNamespace::new("proc-contend").await;
    let tenant = Tenant::new("east", &[&ns.name]);
    let servers = [
        ApiServer::start(vec![tenant.clone()], &[&ns.name], &[]),
        ApiServer::start(vec![tenant.clone()], &[&ns.name], &[]),
    ];
    let targets: Vec<(String, reqwest::Client)> =
        servers.iter().map(|s| (s.url.clone(), https_client(&s.ca_file))).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut tasks = Vec::new();
    for me in 0..CLIENTS {
        let (base, client) = targets[me % 2].clone();
        let (ledger, ns, key) = (ledger.clone(), ns.name.clone(), tenant.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut refusals = 0;
            for round in 0..ROUNDS {
                let lease = LEASES[(me + round) % LEASES.len()];
                let holder = format!("east/client-{me}");
                let at = |verb: &str| format!("{base}/v1alpha1/namespaces/{ns}/leases/{lease}/{verb}");
                let (status, mut answer) =
                    post_json(&client, &at("acquire"), &key, &json!({"holder": holder, "ttlSeconds": 30})).await;
                assert_eq!(status, 200, "client {me}: a loser must get acquired:false, not an error: {answer}");
                if answer["acquired"] != true {
                    refusals += 1;
                    assert!(answer.get("fencingToken").is_none(), "{answer}");
                    assert_ne!(answer["holder"], holder.as_str());
                    // Queue up: woken by informer events when the holder releases.
                    let body = json!({"holder": holder, "ttlSeconds": 30, "waitSeconds": 60});
                    let (status, waited) = post_json(&client, &at("acquire"), &key, &body).await;
                    assert_eq!((status, &waited["acquired"]), (200, &json!(true)), "client {me} waited in vain");
                    answer = waited;
                }
                let token = answer["fencingToken"].as_i64().unwrap();
                {
                    let mut ledger = ledger.lock().unwrap();
                    if let Some(other) = ledger.holder.insert(lease.to_owned(), me) {
                        panic!("{lease}: client {me} granted token {token} while client {other} holds it");
                    }
                    ledger.tokens.entry(lease.to_owned()).or_default().push(token);
                }
                // Not a wait: the holder works a moment, so that others contend meanwhile.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(5..30))).await;
                let (_, renewed) = post_json(
                    &client,
                    &at("renew"),
                    &key,
                    &json!({"holder": holder, "fencingToken": token, "ttlSeconds": 30}),
                )
                .await;
                assert_eq!(renewed["acquired"], true, "client {me} lost {lease} while holding it: {renewed}");
                // Forget the holder before releasing: after the release anyone may win.
                ledger.lock().unwrap().holder.remove(lease);
                let (status, _) =
                    post_json(&client, &at("release"), &key, &json!({"holder": holder, "fencingToken": token})).await;
                assert_eq!(status, 204);
            }
            refusals
        }));
    }
    let mut refusals = 0;
    for task in tasks {
        refusals += task.await.unwrap();
    }
    let tokens_by_lease = std::mem::take(&mut ledger.lock().unwrap().tokens);
    let api = ns.api::<BerthLease>();
    for lease in LEASES {
        let tokens = tokens_by_lease.get(lease).cloned().unwrap_or_default();
        assert_eq!(tokens.len(), CLIENTS * ROUNDS / LEASES.len(), "{lease}: every client holds it once per cycle");
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{lease}: tokens did not rise strictly: {tokens:?}");
        let status = api.get(lease).await.unwrap().status.unwrap();
        assert_eq!(status.transitions as usize, tokens.len(), "{lease}: a grant went unseen");
        assert_eq!(i64::from(status.fencing_token), *tokens.last().unwrap());
    }
    let conflicts: usize = servers.iter().map(|s| count_conflicts(&s.metrics_url)).sum();
    assert!(refusals > 0, "no client ever lost a race: the test did not contend");
    eprintln!(
        "contention: {CLIENTS} clients x {ROUNDS} rounds on {} leases over 2 apiservers: {} grants, {refusals} immediate refusals, {conflicts} write conflicts",
        LEASES.len(),
        CLIENTS * ROUNDS
    );
}

fn count_conflicts(metrics_url: &str) -> usize {
    let addr = metrics_url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    berth_testenv::prometheus::sum(&text, "berth_apiserver_kube_writes_total", &[r#"result="conflict""#]) as usize
}

/// The ClusterRole that the apiserver's chart grants (config/rbac/apiserver.yaml).
fn chart_cluster_role() -> ClusterRole {
    let path = berth_testenv::repo_root().join("config/rbac/apiserver.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .find(|doc| doc["kind"] == "ClusterRole")
        .map(|doc| serde_yaml::from_value(doc).unwrap())
        .unwrap_or_else(|| panic!("no ClusterRole in {}", path.display()))
}

#[tokio::test]
async fn the_rbac_of_the_chart_is_enough_for_every_route() {
    let ns = TestNamespace::new("proc-rbac").await;
    let rules = chart_cluster_role().rules;
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "berth-apiserver"}, "rules": rules})).unwrap();
    ns.api::<Role>().create(&PostParams::default(), &role).await.unwrap();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "berth-apiserver"}})).unwrap();
    ns.api::<ServiceAccount>().create(&PostParams::default(), &account).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "berth-apiserver"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "berth-apiserver"},
        "subjects": [{"kind": "ServiceAccount", "name": "berth-apiserver", "namespace": ns.name}],
    }))
    .unwrap();
    ns.api::<RoleBinding>().create(&PostParams::default(), &binding).await.unwrap();

    let kubeconfig = berth_testenv::service_account_kubeconfig(&ns.name, "berth-apiserver");
    // Ready means the reflector could list and watch under this identity.
    let server = ApiServer::start_as(&kubeconfig, vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let client = https_client(&server.ca_file);
    let key = server.key("east").to_owned();
    let at = |verb: &str| url(&server, &ns.name, "rbac", verb);
    let (status, granted) =
        post_json(&client, &at("acquire"), &key, &json!({"holder": "east", "ttlSeconds": 30})).await;
    assert_eq!((status, &granted["acquired"]), (200, &json!(true)), "{granted}\n{}", server.log());
    let body = json!({"holder": "east", "fencingToken": 1, "ttlSeconds": 30});
    let (_, renewed) = post_json(&client, &at("renew"), &key, &body).await;
    assert_eq!(renewed["acquired"], true, "{renewed}");
    let (status, _) = post_json(&client, &at("release"), &key, &json!({"holder": "east", "fencingToken": 1})).await;
    assert_eq!(status, 204);
    let view = client.get(format!("{}/v1alpha1/namespaces/{}/leases/rbac", server.url, ns.name)).bearer_auth(&key);
    let view: serde_json::Value = serde_json::from_str(&view.send().await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(view["state"], "released", "{view}");
}

/// One read from `stream`: whether the server has closed it (end of stream,
/// or an error other than the 200 ms read timeout).
fn closed(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Reads until the server closes `stream`; 60 s is only a failure bound.
fn wait_closed(stream: &mut impl Read, what: &str) {
    berth_testenv::eventually_blocking(&format!("the server closes {what}"), Duration::from_secs(60), || {
        closed(stream).then_some(())
    });
}

fn connect(server: &ApiServer) -> std::net::TcpStream {
    let addr = server.url.strip_prefix("https://").unwrap();
    let stream = std::net::TcpStream::connect(addr).expect("the TLS port accepts");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    stream
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_a_holder_is_served() {
    let ns = TestNamespace::new("proc-slow").await;
    let limits = ["--tls-handshake-timeout=1s", "--header-read-timeout=1s"];
    let server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &limits);

    // A client that opens TCP and never starts the TLS handshake.
    let mut silent = connect(&server);
    let silent = std::thread::spawn(move || wait_closed(&mut silent, "a client that never handshakes"));
    // A client that finishes the handshake, then sends a header line every quarter second.
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(tls_client_config(&server.ca_file)), name).unwrap();
    let mut slow = rustls::StreamOwned::new(tls, connect(&server));
    write!(slow, "POST /v1alpha1/namespaces/{}/leases/slow/acquire HTTP/1.1\r\nHost: localhost\r\n", ns.name).unwrap();
    slow.flush().unwrap();
    let slow = std::thread::spawn(move || {
        let mut line = 0;
        berth_testenv::eventually_blocking("the server closes the slow client", Duration::from_secs(60), || {
            if closed(&mut slow) {
                return Some(());
            }
            line += 1;
            let _ = write!(slow, "X-Slow-{line}: 1\r\n").and_then(|()| slow.flush());
            None
        });
    });

    // Meanwhile a holder is served.
    let client = https_client(&server.ca_file);
    let at = url(&server, &ns.name, "held", "acquire");
    let (status, body) =
        post_json(&client, &at, server.key("east"), &json!({"holder": "east/a", "ttlSeconds": 30})).await;
    assert_eq!((status, &body["acquired"]), (200, &json!(true)), "{body}");

    slow.join().expect("the slow client is cut off");
    silent.join().expect("the silent client is cut off");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    // No namespace of its own: the CRD must still exist before the cache can sync.
    berth_testenv::install_crd(&berth_testenv::client().await).await;
    // The handshake timeout (300 s) is far past the 60 s failure bound: a
    // close within the bound comes from the cap.
    let limits = ["--max-connections=1", "--tls-handshake-timeout=300s"];
    let server = ApiServer::start(vec![Tenant::new("east", &[])], &[], &limits);
    // Connections are accepted in tasks of their own, so the second could win
    // the slot. Only an accepted connection completes its handshake: once the
    // first has, it holds the slot.
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(tls_client_config(&server.ca_file)), name).unwrap();
    let mut first = rustls::StreamOwned::new(tls, connect(&server));
    while first.conn.is_handshaking() {
        if let Err(e) = first.conn.complete_io(&mut first.sock) {
            let waiting = matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
            assert!(waiting, "the first connection's handshake failed: {e}");
        }
    }
    let mut second = connect(&server);
    wait_closed(&mut second, "a connection past --max-connections=1");
    assert!(!closed(&mut first), "the first connection keeps its slot");
}
