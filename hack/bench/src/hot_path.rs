//! Scenario 1: the cost of one renew through Berth (HTTPS with a keep-alive
//! client, the apiserver's checks, `decide`, one conditional status write)
//! against the floor: the same conditional status write of the same kind of
//! BerthLease, made straight to kube-apiserver after the same `decide`.
//!
//! The two sides alternate request by request (their order flips every
//! pair), so both see the same machine at the same moment.

use std::time::{Duration, Instant};

use berth_api::BerthLease;
use berth_api::rules::{self, Request};
use berth_api::wire::{AcquireRequest, RenewRequest};
use chrono::Utc;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use berth_testenv::prometheus::sum as metric_sum;

use crate::stack::Stack;
use crate::stats::{Latency, median, ms};
use crate::{Error, Result};

const HOLDER: &str = "bench/hot-path";
const TTL_SECONDS: i32 = 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repetition {
    pub berth: Latency,
    pub raw: Latency,
    pub ratio_p50: f64,
    pub ratio_p99: f64,
    /// Mean renew time inside the apiserver (its request-duration histogram:
    /// checks, `decide`, the write to kube-apiserver), and the means of both
    /// sides as this process timed them: where Berth's extra time goes.
    pub apiserver_mean_ms: f64,
    pub berth_mean_ms: f64,
    pub raw_mean_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HotPath {
    pub samples_per_side: usize,
    /// Raw writes that met a conflict and were retried (by the operator's
    /// condition writes); the Berth side retries the same way inside the apiserver.
    pub raw_conflicts: usize,
    pub repetitions: Vec<Repetition>,
    /// Field by field, the median over the repetitions.
    #[serde(flatten)]
    pub median: Repetition,
}

/// The raw side: a BerthLease whose status this process writes itself.
struct RawWriter {
    api: Api<BerthLease>,
    lease: BerthLease,
    fencing_token: i32,
}

impl RawWriter {
    /// One renew: `decide` on the last written copy, then `replace_status`
    /// guarded by its resourceVersion, as the apiserver writes. On a conflict
    /// (the operator wrote conditions) it rereads and decides again, as the
    /// apiserver does; returns whether that happened.
    async fn renew(&mut self) -> Result<bool> {
        let name = self.lease.metadata.name.clone().unwrap_or_default();
        for attempt in 0..8 {
            let request =
                Request::Renew { holder: HOLDER, fencing_token: self.fencing_token, ttl_seconds: TTL_SECONDS };
            let status = self.lease.status.clone().unwrap_or_default();
            let decision = rules::decide(&self.lease.spec, &status, &request, Utc::now());
            let status = decision.status.ok_or_else(|| Error::Scenario("the raw renew was refused".to_owned()))?;
            let mut object = self.lease.clone();
            object.metadata.managed_fields = None;
            object.status = Some(status);
            let params = PostParams { dry_run: false, field_manager: Some("berth-bench".to_owned()) };
            match self.api.replace_status(&name, &params, &object).await {
                Ok(written) => {
                    self.lease = written;
                    return Ok(attempt > 0);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => self.lease = self.api.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Scenario("the raw renew conflicted 8 times".to_owned()))
    }
}

/// Seconds and count of successful renews in the apiserver's request-duration histogram.
async fn server_renews(stack: &Stack) -> (f64, f64) {
    const METRIC: &str = "berth_apiserver_http_request_duration_seconds";
    let text = stack.apiserver_metrics().await;
    let labels = ["/renew\"", "status=\"200\""];
    (metric_sum(&text, &format!("{METRIC}_sum"), &labels), metric_sum(&text, &format!("{METRIC}_count"), &labels))
}

/// # Errors
/// When a renew on either side fails: the floor and Berth must both work.
pub async fn run(stack: &Stack, profile: &Profile) -> Result<HotPath> {
    let ns = stack.namespace("bench-hot").await;
    let client = stack.client()?;
    // Both leases are made the same way, by a creating acquire through Berth,
    // so the raw side writes an object of the same shape.
    let acquire = AcquireRequest { holder: HOLDER.to_owned(), ttl_seconds: TTL_SECONDS, ..Default::default() };
    let berth_grant = client.acquire(&ns, "hot-berth", &acquire).await?;
    let raw_grant = client.acquire(&ns, "hot-raw", &acquire).await?;
    let api: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &ns);
    // The operator writes the first conditions of each new lease: let that land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut raw = RawWriter { lease: api.get("hot-raw").await?, api, fencing_token: raw_grant.fencing_token };
    let mut raw_conflicts = 0;
    let renew =
        RenewRequest { holder: HOLDER.to_owned(), fencing_token: berth_grant.fencing_token, ttl_seconds: TTL_SECONDS };

    let mut repetitions = Vec::new();
    for _ in 0..profile.repetitions {
        let (mut berth_ms, mut raw_ms) = (Vec::new(), Vec::new());
        let mut server_before = (0.0, 0.0);
        for i in 0..profile.hot_path_warmup + profile.hot_path_samples {
            let counted = i >= profile.hot_path_warmup;
            if i == profile.hot_path_warmup {
                server_before = server_renews(stack).await;
            }
            for berth_side in [i % 2 == 0, i % 2 == 1] {
                let started = Instant::now();
                if berth_side {
                    client.renew(&ns, "hot-berth", &renew).await?;
                } else {
                    raw_conflicts += usize::from(raw.renew().await?);
                }
                let took = ms(started.elapsed());
                if counted {
                    if berth_side { berth_ms.push(took) } else { raw_ms.push(took) }
                }
            }
        }
        let server_after = server_renews(stack).await;
        let (berth, raw) = (Latency::of(&berth_ms), Latency::of(&raw_ms));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        repetitions.push(Repetition {
            apiserver_mean_ms: (server_after.0 - server_before.0) * 1000.0
                / (server_after.1 - server_before.1).max(1.0),
            berth_mean_ms: mean(&berth_ms),
            raw_mean_ms: mean(&raw_ms),
            ratio_p50: berth.p50_ms / raw.p50_ms,
            ratio_p99: berth.p99_ms / raw.p99_ms,
            berth,
            raw,
        });
    }
    let med = |f: fn(&Repetition) -> f64| median(&repetitions.iter().map(f).collect::<Vec<_>>());
    Ok(HotPath {
        samples_per_side: profile.hot_path_samples,
        raw_conflicts,
        median: Repetition {
            berth: Latency::median_of(&repetitions.iter().map(|r| r.berth.clone()).collect::<Vec<_>>()),
            raw: Latency::median_of(&repetitions.iter().map(|r| r.raw.clone()).collect::<Vec<_>>()),
            ratio_p50: med(|r| r.ratio_p50),
            ratio_p99: med(|r| r.ratio_p99),
            apiserver_mean_ms: med(|r| r.apiserver_mean_ms),
            berth_mean_ms: med(|r| r.berth_mean_ms),
            raw_mean_ms: med(|r| r.raw_mean_ms),
        },
        repetitions,
    })
}
