//! Scenario 6: what each authenticator adds to a renew. The same renew,
//! through the same kind of keep-alive client, authenticated four ways side
//! by side: a static API key, a service-account JWT checked offline (keys
//! from the issuer's discovery), and TokenReview with the answer cached (a
//! hit) and with no cache at all (`cacheTTL: 0s`, a miss every time).
//!
//! Each way has its own lease; the four renews of a round run in a rotating
//! order, so all see the same machine at the same moment.

use std::time::Instant;

use berth_api::wire::{AcquireRequest, RenewRequest};
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::identity::ControlPlane;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::stack::{Stack, TENANT};
use crate::stats::{Latency, ms};
use crate::{Error, Result};

const TTL_SECONDS: i32 = 30;
/// The four ways, in the order of [`AuthCost::ways`].
pub const WAYS: [&str; 4] = ["API key", "JWT (offline)", "TokenReview, cache hit", "TokenReview, cache miss"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthCost {
    pub samples_per_way: usize,
    /// Per way (as [`WAYS`]), the median over the repetitions.
    pub ways: Vec<Latency>,
    /// Per repetition, per way.
    pub repetitions: Vec<Vec<Latency>>,
}

/// One way: a client of an apiserver with a credential, and its lease.
struct Way {
    client: berth_client::Client,
    lease: String,
    fencing_token: i32,
}

/// # Errors
/// When a renew fails, or a credential is refused.
pub async fn run(stack: &Stack, profile: &Profile) -> Result<AuthCost> {
    let ns = stack.namespace("bench-auth").await;
    let cp = ControlPlane::coordination();
    let token = {
        let (cp, ns) = (cp.clone(), ns.clone());
        tokio::task::spawn_blocking(move || {
            cp.create_service_account(&ns, "holder");
            cp.token(&ns, "holder", "berth", None)
        })
        .await
        .map_err(|e| Error::Scenario(format!("minting a service-account token: {e}")))?
    };
    let account = format!("{ns}:holder");
    let tenants = serde_json::json!([{"serviceAccount": account, "tenant": TENANT}]);
    let jwt = serde_json::json!({"jwt": [{
        "issuer": {"url": cp.issuer(), "audiences": ["berth"], "certificateAuthority": cp.ca_pem()},
        "tenants": tenants,
    }]});
    let review = |ttl: &str| serde_json::json!({"tokenReview": {"cacheTTL": ttl, "tenants": tenants}});
    let servers = [
        start(&ns, "jwt", jwt).await?,
        start(&ns, "hit", review("5m")).await?,
        start(&ns, "miss", review("0s")).await?,
    ];

    let key = servers[0].key(TENANT).to_owned();
    let credentials =
        [(&servers[0], key.as_str()), (&servers[0], &token), (&servers[1], &token), (&servers[2], &token)];
    let mut ways = Vec::new();
    for (i, (server, credential)) in credentials.into_iter().enumerate() {
        let client =
            berth_client::Client::builder(&server.url).api_key(credential).ca_file(&server.ca_file)?.build()?;
        let lease = format!("auth-{i}");
        let acquire =
            AcquireRequest { holder: format!("{TENANT}/auth"), ttl_seconds: TTL_SECONDS, ..Default::default() };
        let grant = client.acquire(&ns, &lease, &acquire).await?;
        ways.push(Way { client, lease, fencing_token: grant.fencing_token });
    }

    let mut repetitions = Vec::new();
    for _ in 0..profile.repetitions {
        let mut samples = vec![Vec::new(); ways.len()];
        for i in 0..profile.hot_path_warmup + profile.hot_path_samples {
            for k in 0..ways.len() {
                let index = (i + k) % ways.len();
                let way = &ways[index];
                let renew = RenewRequest {
                    holder: format!("{TENANT}/auth"),
                    fencing_token: way.fencing_token,
                    ttl_seconds: TTL_SECONDS,
                };
                let started = Instant::now();
                way.client.renew(&ns, &way.lease, &renew).await?;
                if i >= profile.hot_path_warmup {
                    samples[index].push(ms(started.elapsed()));
                }
            }
        }
        repetitions.push(samples.iter().map(|s| Latency::of(s)).collect::<Vec<_>>());
    }
    let ways = (0..ways.len())
        .map(|i| Latency::median_of(&repetitions.iter().map(|r| r[i].clone()).collect::<Vec<_>>()))
        .collect();
    Ok(AuthCost { samples_per_way: profile.hot_path_samples, ways, repetitions })
}

/// An apiserver with a keys file (tenant [`TENANT`]) and this authentication configuration.
async fn start(ns: &str, name: &str, mut config: serde_json::Value) -> Result<ApiServer> {
    config["apiVersion"] = "berth.skaphos.io/v1alpha1".into();
    config["kind"] = "AuthenticationConfiguration".into();
    let path = std::env::temp_dir().join(format!("berth-bench-auth-{ns}-{name}.json"));
    std::fs::write(&path, config.to_string()).map_err(Error::io(format!("writing {}", path.display())))?;
    let arg = format!("--authentication-config={}", path.display());
    tokio::task::spawn_blocking(move || ApiServer::start(vec![Tenant::new(TENANT, &[])], &[], &[&arg]))
        .await
        .map_err(|e| Error::Scenario(format!("starting an apiserver: {e}")))
}
