//! A client built with `api_key_file` follows a key file that rotates under
//! it, against the real apiserver binary on the real control plane. Run
//! `cargo build -p berth-apiserver` first.

use std::path::Path;
use std::time::Duration;

use berth_api::BerthLease;
use berth_client::{Client, Error, KeeperOptions, KeeperState, LeaseKeeper};
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use chrono::{DateTime, Utc};

/// Replaces the file in one step, as the kubelet's symlink swap does.
fn write_atomically(path: &Path, key: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{key}\n")).expect("key file writes");
    std::fs::rename(&tmp, path).expect("key file renames");
}

/// [`berth_testenv::eventually`] for a check that answers yes or no; 20 s bound.
async fn until<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    berth_testenv::eventually(what, Duration::from_secs(20), || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// Whether the server takes `key` now: Some(true) accepted, Some(false) 401.
async fn accepts(server: &ApiServer, key: &str) -> Option<bool> {
    let client = Client::builder(&server.url).api_key(key).ca_file(&server.ca_file).ok()?.build().ok()?;
    match client.list_all().await {
        Ok(_) => Some(true),
        Err(Error::Unauthorized(_)) => Some(false),
        Err(_) => None,
    }
}

async fn renewed_at(ns: &TestNamespace, name: &str) -> Option<DateTime<Utc>> {
    let lease = ns.api::<BerthLease>().get(name).await.ok()?;
    lease.status?.holders.first().map(|h| h.renewed_at)
}

/// Waits until the server has renewed the lease after `after`: a renew sent
/// with the key in force at that moment went through.
async fn renewed_after(ns: &TestNamespace, name: &str, after: DateTime<Utc>) {
    until("a renew after the rotation", || async { renewed_at(ns, name).await.is_some_and(|at| at > after) }).await;
}

#[tokio::test]
async fn keeper_keeps_its_lease_while_the_key_file_rotates() {
    let ns = TestNamespace::new("key-rotation").await;
    let first = Tenant::new("team", &[&ns.name]);
    let second = Tenant::new("team", &[&ns.name]);
    let third = Tenant::new("team", &[&ns.name]);
    let mut server = ApiServer::start(vec![first.clone()], &[], &[]);
    let key_file = server.dir.join("client-token");
    write_atomically(&key_file, &first.key);

    let client = Client::builder(&server.url)
        .api_key_file(&key_file)
        .ca_file(&server.ca_file)
        .expect("CA file reads")
        .build()
        .expect("client builds");
    let options = KeeperOptions::new(&ns.name, "rotating", "team/worker", Duration::from_secs(6))
        .heartbeat(Duration::from_millis(500));
    let keeper = LeaseKeeper::acquire(client, options).await.expect("acquire with the first key");
    let token = keeper.fencing_token();

    // Overlapping rotation, as with a projected token: the server accepts both
    // keys, the file changes, then the old key is revoked.
    server.write_keys(vec![first.clone(), second.clone()]);
    until("the server accepts the second key", || async { accepts(&server, &second.key).await == Some(true) }).await;
    write_atomically(&key_file, &second.key);
    server.write_keys(vec![second.clone()]);
    until("the server refuses the first key", || async { accepts(&server, &first.key).await == Some(false) }).await;
    renewed_after(&ns, "rotating", Utc::now()).await;

    // Abrupt rotation: the old key is revoked together with the file change,
    // so a renew may meet a 401 before the client has looked at the file again.
    write_atomically(&key_file, &third.key);
    server.write_keys(vec![third.clone()]);
    until("the server refuses the second key", || async { accepts(&server, &second.key).await == Some(false) }).await;
    renewed_after(&ns, "rotating", Utc::now()).await;

    // A file that is briefly gone (mid-swap) keeps the last good key.
    std::fs::remove_file(&key_file).expect("key file removes");
    renewed_after(&ns, "rotating", Utc::now()).await;

    let state = keeper.subscribe().borrow().clone();
    assert!(
        matches!(state, KeeperState::Held { fencing_token, .. } if fencing_token == token),
        "the keeper lost its lease across the rotations: {state:?}\n{}",
        server.log()
    );
    keeper.release().await.expect("release with the last key");
    until("the lease is released", || async { renewed_at(&ns, "rotating").await.is_none() }).await;
}

/// A service-account token read from a file and checked by TokenReview: mid
/// tenure the file gets a new token and the old one is revoked (its bound
/// Secret deleted). The keeper keeps its lease.
#[tokio::test]
async fn keeper_keeps_its_lease_across_a_service_account_token_rotation() {
    let ns = TestNamespace::new("token-rotation").await;
    let cp = berth_testenv::identity::ControlPlane::coordination();
    cp.create_service_account(&ns.name, "holder");
    let token = |secret: &str| {
        cp.kubectl_output(&["create", "secret", "generic", secret, "-n", &ns.name]);
        cp.token(&ns.name, "holder", "berth", Some(secret))
    };
    let config = serde_json::json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "AuthenticationConfiguration",
        "tokenReview": {"cacheTTL": "1s", "tenants": [
            {"serviceAccount": format!("{}:holder", ns.name), "tenant": "gamma", "namespaces": [ns.name]}
        ]},
    });
    let config_file = std::env::temp_dir().join(format!("berth-token-rotation-{}.json", ns.name));
    std::fs::write(&config_file, config.to_string()).expect("config writes");
    let arg = format!("--authentication-config={}", config_file.display());
    let server = ApiServer::start(vec![Tenant::new("keys", &[])], &[], &[&arg]);

    let first = token("first");
    let key_file = server.dir.join("token");
    write_atomically(&key_file, &first);
    let client = Client::builder(&server.url)
        .api_key_file(&key_file)
        .ca_file(&server.ca_file)
        .expect("CA file reads")
        .build()
        .expect("client builds");
    let options = KeeperOptions::new(&ns.name, "rotating", "gamma/worker", Duration::from_secs(6))
        .heartbeat(Duration::from_millis(500));
    let keeper = LeaseKeeper::acquire(client, options).await.expect("acquire with the first token");
    let fencing_token = keeper.fencing_token();

    write_atomically(&key_file, &token("second"));
    cp.kubectl_output(&["delete", "secret", "first", "-n", &ns.name]);
    until("the first token is refused", || async { accepts(&server, &first).await == Some(false) }).await;
    renewed_after(&ns, "rotating", Utc::now() + chrono::Duration::seconds(1)).await;

    let state = keeper.subscribe().borrow().clone();
    assert!(
        matches!(state, KeeperState::Held { fencing_token: held, .. } if held == fencing_token),
        "the keeper lost its lease across the rotation: {state:?}\n{}",
        server.log()
    );
    keeper.release().await.expect("release with the second token");
    let _ = std::fs::remove_file(&config_file);
}
