//! Scenario 3: leases with CronJob targets expire; how late does the
//! operator write the expired status, and suspend the CronJob?
//!
//! Three readings of the same events, each with its own resolution:
//! - **objects**: `status.lastTransitionTime` of the expired status (the
//!   operator's clock when it decided, just before its write) and
//!   `status.target.observedAt` after the release action (its clock just
//!   after the CronJob patch), both with nanoseconds, minus `expiresAt`;
//! - **watch**: this process watches BerthLeases and CronJobs and stamps each
//!   change when it arrives: this adds the watch delivery (a few ms);
//! - **histogram**: `berth_operator_expiry_lag_seconds`, whose buckets double
//!   from 1 ms, so a quantile is only known within a factor of two
//!   (interpolated linearly inside its bucket, as `histogram_quantile` does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::crd::{AppliedAction, LeaseState};
use berth_api::wire::AcquireRequest;
use berth_testenv::prometheus::{bucket_delta, buckets, histogram_quantile};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{Latency, median, ms_between};
use crate::{Error, Result};

const METRIC: &str = "berth_operator_expiry_lag_seconds";

/// How late each step of a burst came, by each reading.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Lags {
    /// `expiresAt` → `lastTransitionTime` of the expired status.
    pub status_from_objects: Latency,
    /// `expiresAt` → `status.target.observedAt` of the release action.
    pub suspend_from_objects: Latency,
    /// `expiresAt` → this process saw the expired status.
    pub status_from_watch: Latency,
    /// `expiresAt` → this process saw the CronJob suspended.
    pub suspend_from_watch: Latency,
    /// The operator's histogram.
    pub status_histogram_p50_ms: f64,
    pub status_histogram_p99_ms: f64,
    /// The raw side: as many CronJobs, running, suspended by one
    /// server-side apply each, all sent at once; from the send to this
    /// process seeing each suspended (watch).
    #[serde(default)]
    pub raw_suspend_from_watch: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repetition {
    pub leases: usize,
    #[serde(flatten)]
    pub lags: Lags,
    /// CronJobs still running when the first lease expired (their resume had
    /// not been applied yet); 0 in a clean run.
    pub not_resumed_before_expiry: usize,
    /// The operator's writes to kube-apiserver (status writes and target
    /// writes, from its metrics) from the first `expiresAt` until this
    /// process had seen every lease expired and every CronJob suspended.
    #[serde(default)]
    pub burst_writes: f64,
    /// That span, in seconds.
    #[serde(default)]
    pub burst_seconds: f64,
    /// The operator's target reads over the same span.
    #[serde(default)]
    pub burst_target_reads: f64,
}

impl Repetition {
    /// The burst's writes per second, against the raw write rate of the machine.
    pub fn burst_writes_per_second(&self) -> f64 {
        if self.burst_seconds > 0.0 { self.burst_writes / self.burst_seconds } else { f64::NAN }
    }

    /// The operator's writes (status and target) per expired lease.
    pub fn writes_per_expiry(&self) -> f64 {
        self.burst_writes / self.leases as f64
    }

    /// The operator's target reads per expired lease.
    pub fn reads_per_expiry(&self) -> f64 {
        self.burst_target_reads / self.leases as f64
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Expiry {
    pub ttl_seconds: i32,
    pub repetitions: Vec<Repetition>,
    /// Field by field, the medians over the repetitions.
    #[serde(flatten)]
    pub lags: Lags,
    /// Median over the repetitions of [`Repetition::burst_writes_per_second`].
    #[serde(default)]
    pub burst_writes_per_second: f64,
    /// Medians over the repetitions of the writes and reads per expiry.
    #[serde(default)]
    pub writes_per_expiry: f64,
    #[serde(default)]
    pub reads_per_expiry: f64,
}

impl Expiry {
    /// The burst's p99 to the CronJob seen suspended over the raw side's.
    pub fn suspend_ratio_to_raw(&self) -> f64 {
        self.lags.suspend_from_watch.p99_ms / self.lags.raw_suspend_from_watch.p99_ms
    }
}

/// # Errors
/// When the leases cannot be set up, or do not all expire and suspend their
/// CronJobs within 60 s of their expiry.
pub async fn run(stack: &Stack, profile: &Profile) -> Result<Expiry> {
    let mut repetitions = Vec::new();
    for _ in 0..profile.slow_repetitions {
        repetitions.push(repetition(stack, profile).await?);
    }
    let latency = |f: fn(&Lags) -> &Latency| {
        Latency::median_of(&repetitions.iter().map(|r| f(&r.lags).clone()).collect::<Vec<_>>())
    };
    let value = |f: fn(&Repetition) -> f64| median(&repetitions.iter().map(f).collect::<Vec<_>>());
    Ok(Expiry {
        ttl_seconds: profile.expiry_ttl_seconds,
        lags: Lags {
            status_from_objects: latency(|l| &l.status_from_objects),
            suspend_from_objects: latency(|l| &l.suspend_from_objects),
            status_from_watch: latency(|l| &l.status_from_watch),
            suspend_from_watch: latency(|l| &l.suspend_from_watch),
            status_histogram_p50_ms: value(|r| r.lags.status_histogram_p50_ms),
            status_histogram_p99_ms: value(|r| r.lags.status_histogram_p99_ms),
            raw_suspend_from_watch: latency(|l| &l.raw_suspend_from_watch),
        },
        burst_writes_per_second: value(Repetition::burst_writes_per_second),
        writes_per_expiry: value(Repetition::writes_per_expiry),
        reads_per_expiry: value(Repetition::reads_per_expiry),
        repetitions,
    })
}

type Seen = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;
type Resumed = Arc<Mutex<std::collections::HashSet<String>>>;

async fn repetition(stack: &Stack, profile: &Profile) -> Result<Repetition> {
    let ns = stack.namespace("bench-expiry").await;
    let leases: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &ns);
    let cronjobs: Api<CronJob> = Api::namespaced(stack.kube.clone(), &ns);
    let names: Vec<String> = (0..profile.expiry_leases).map(|i| format!("expiry-{i:04}")).collect();
    for name in &names {
        cronjobs.create(&PostParams::default(), &cronjob(name)?).await?;
        leases.create(&PostParams::default(), &lease(name)?).await?;
    }

    // Watch before anything expires; stamp the first expired status and the
    // first suspension after a resume.
    let expired_seen: Seen = Arc::default();
    let suspended_seen: Seen = Arc::default();
    let lease_watch = tokio::spawn(watch_leases(leases.clone(), expired_seen.clone()));
    let resumed: Resumed = Arc::default();
    let cronjob_watch = tokio::spawn(watch_cronjobs(cronjobs.clone(), resumed.clone(), suspended_seen.clone()));
    let before = stack.operator_metrics().await;

    let client = stack.client()?;
    let expires: HashMap<String, DateTime<Utc>> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let (client, ns) = (client.clone(), ns.clone());
            let request = AcquireRequest {
                holder: format!("bench/{name}"),
                ttl_seconds: profile.expiry_ttl_seconds,
                ..Default::default()
            };
            async move {
                let grant = client.acquire(&ns, &name, &request).await?;
                let at = grant.expires_at.ok_or_else(|| Error::Scenario(format!("{name}: no expiresAt")))?;
                Ok::<_, Error>((name, at))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let first_expiry = expires.values().min().copied().unwrap_or_else(Utc::now);
    let last_expiry = expires.values().max().copied().unwrap_or_else(Utc::now);

    sleep_until(first_expiry).await;
    let at_first_expiry = stack.operator_metrics().await;
    let running = cronjobs.list(&Default::default()).await?;
    let not_resumed_before_expiry = running.items.iter().filter(|c| c.spec.suspend.unwrap_or(false)).count();

    // Done once every lease is seen expired and every CronJob seen running
    // is seen suspended again, twice a second apart (the CronJob watch may
    // trail the lease watch). A CronJob whose resume had not been applied
    // when its lease expired was never running: it has no suspension to time.
    let give_up = last_expiry + chrono::Duration::seconds(60);
    let mut settled_once = false;
    loop {
        let settled = expired_seen.lock().expect("lock").len() == names.len() && {
            let suspended = suspended_seen.lock().expect("lock");
            resumed.lock().expect("lock").iter().all(|name| suspended.contains_key(name))
        };
        if settled && settled_once {
            break;
        }
        settled_once = settled;
        if settled {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if Utc::now() > give_up {
            lease_watch.abort();
            cronjob_watch.abort();
            return Err(Error::Scenario(format!(
                "{ns}: after 60 s, {} of {} leases expired and {} CronJobs suspended",
                expired_seen.lock().expect("lock").len(),
                names.len(),
                suspended_seen.lock().expect("lock").len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lease_watch.abort();
    cronjob_watch.abort();
    let after = stack.operator_metrics().await;
    let raw_suspend_from_watch = raw_suspends(&cronjobs, names.len()).await?;

    let mut status_objects = Vec::new();
    let mut suspend_objects = Vec::new();
    for lease in leases.list(&Default::default()).await?.items {
        let name = lease.metadata.name.clone().unwrap_or_default();
        let (Some(expires_at), Some(status)) = (expires.get(&name), lease.status.as_ref()) else { continue };
        if let Some(t) = status.last_transition_time.filter(|_| status.state == LeaseState::Expired) {
            status_objects.push(ms_between(*expires_at, t));
        }
        if let Some(target) = status.target.as_ref().filter(|t| t.applied == AppliedAction::Release) {
            suspend_objects.push(ms_between(*expires_at, target.observed_at));
        }
    }
    let lags = |seen: &Seen| -> Vec<f64> {
        let seen = seen.lock().expect("lock");
        expires.iter().filter_map(|(name, at)| seen.get(name).map(|t| ms_between(*at, *t))).collect()
    };
    let delta = histogram_delta(&before, &after);
    let last_seen = [&expired_seen, &suspended_seen]
        .iter()
        .filter_map(|seen| seen.lock().expect("lock").values().max().copied())
        .max()
        .unwrap_or(first_expiry);
    Ok(Repetition {
        leases: names.len(),
        lags: Lags {
            status_from_objects: Latency::of(&status_objects),
            suspend_from_objects: Latency::of(&suspend_objects),
            status_from_watch: Latency::of(&lags(&expired_seen)),
            suspend_from_watch: Latency::of(&lags(&suspended_seen)),
            status_histogram_p50_ms: histogram_quantile(&delta, 0.50) * 1000.0,
            status_histogram_p99_ms: histogram_quantile(&delta, 0.99) * 1000.0,
            raw_suspend_from_watch,
        },
        not_resumed_before_expiry,
        burst_writes: operator_writes(&after) - operator_writes(&at_first_expiry),
        burst_seconds: ms_between(first_expiry, last_seen) / 1000.0,
        burst_target_reads: target_reads(&after) - target_reads(&at_first_expiry),
    })
}

/// The raw side of a burst: `count` running CronJobs, each suspended by one
/// server-side apply, all sent at once, as the operator's target writes are.
/// From the send to this process seeing each suspended.
async fn raw_suspends(cronjobs: &Api<CronJob>, count: usize) -> Result<Latency> {
    let names: Vec<String> = (0..count).map(|i| format!("raw-{i:04}")).collect();
    for name in &names {
        let mut running = cronjob(name)?;
        running.spec.suspend = Some(false);
        cronjobs.create(&PostParams::default(), &running).await?;
    }
    let resumed: Resumed = Arc::default();
    let seen: Seen = Arc::default();
    let watch = tokio::spawn(watch_cronjobs(cronjobs.clone(), resumed.clone(), seen.clone()));
    let all_seen = |set: &dyn Fn() -> usize| set() >= count;
    let deadline = Utc::now() + chrono::Duration::seconds(60);
    while !all_seen(&|| names.iter().filter(|n| resumed.lock().expect("lock").contains(*n)).count()) {
        if Utc::now() > deadline {
            watch.abort();
            return Err(Error::Scenario("the raw side's CronJobs were not all seen running within 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let params = PatchParams::apply("berth-bench-raw").force();
    let sent = Utc::now();
    futures::future::try_join_all(names.iter().map(|name| {
        let body = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name}, "spec": {"suspend": true},
        });
        let params = params.clone();
        async move { cronjobs.patch(name, &params, &Patch::Apply(body)).await }
    }))
    .await?;
    while !all_seen(&|| names.iter().filter(|n| seen.lock().expect("lock").contains_key(*n)).count()) {
        if Utc::now() > deadline + chrono::Duration::seconds(60) {
            watch.abort();
            return Err(Error::Scenario("the raw side's suspensions were not all seen within 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let seen = seen.lock().expect("lock");
    Ok(Latency::of(&names.iter().filter_map(|n| seen.get(n).map(|t| ms_between(sent, *t))).collect::<Vec<_>>()))
}

/// The operator's target reads, from its metrics text.
fn target_reads(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("berth_operator_target_reads_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Status writes (ok or conflict) and target writes the operator made, from its metrics text.
fn operator_writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("berth_operator_status_writes_total{")
                || line.starts_with("berth_operator_target_actions_total{")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

async fn watch_leases(api: Api<BerthLease>, seen: Seen) {
    let mut events = watcher(api, watcher::Config::default()).applied_objects().boxed();
    while let Some(Ok(lease)) = events.next().await {
        let now = Utc::now();
        if lease.status.as_ref().is_some_and(|s| s.state == LeaseState::Expired) {
            let name = lease.metadata.name.unwrap_or_default();
            seen.lock().expect("lock").entry(name).or_insert(now);
        }
    }
}

/// Stamps a CronJob's first suspension after it has been seen running.
async fn watch_cronjobs(api: Api<CronJob>, resumed: Resumed, seen: Seen) {
    let mut events = watcher(api, watcher::Config::default()).applied_objects().boxed();
    while let Some(Ok(cronjob)) = events.next().await {
        let now = Utc::now();
        let name = cronjob.metadata.name.clone().unwrap_or_default();
        match cronjob.spec.suspend {
            Some(false) => {
                resumed.lock().expect("lock").insert(name);
            }
            _ if resumed.lock().expect("lock").contains(&name) => {
                seen.lock().expect("lock").entry(name).or_insert(now);
            }
            _ => {}
        }
    }
}

/// A CronJob that never fires on its own (once a year), created suspended.
fn cronjob(name: &str) -> Result<CronJob> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": "busybox"}]
            }}}}
        }
    }))?)
}

/// A lease that resumes its CronJob while held and suspends it otherwise.
fn lease(name: &str) -> Result<BerthLease> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "berth.skaphos.io/v1alpha1",
        "kind": "BerthLease",
        "metadata": {"name": name},
        "spec": {
            "target": {"apiVersion": "batch/v1", "kind": "CronJob", "name": name},
            "acquireAction": {"suspend": false},
            "releaseAction": {"suspend": true}
        }
    }))?)
}

/// Cumulative bucket counts (`le` in seconds → count) of [`METRIC`], after minus before.
fn histogram_delta(before: &str, after: &str) -> Vec<(f64, f64)> {
    bucket_delta(&buckets(before, METRIC, &[]), &buckets(after, METRIC, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_writes_sum_status_and_target_writes() {
        let text = "berth_operator_status_writes_total{result=\"ok\"} 7\n\
                    berth_operator_status_writes_total{result=\"conflict\"} 2\n\
                    berth_operator_target_actions_total{kind=\"CronJob\",action=\"release\"} 3\n\
                    berth_operator_reconciliations_total 40\n";
        assert_eq!(operator_writes(text), 12.0);
    }
}
