//! Scenario 5: the memory of the apiserver and the operator holding 10,000
//! leases in their caches, measured on fresh processes.
//!
//! The leases are created held (see [`crate::seed`]); once both caches have
//! them all, memory is read at rest. Then every lease is renewed once through
//! Berth, spread evenly over `memory_renew_period` (167 renews/s, a sixth of
//! 10,000 leases every 10 s; near a 2-core machine's knee, see scale), and
//! memory is read again: each renew replaces a cached object, so this is the
//! figure of a cache in use. Last, the operator is restarted over all of them
//! (a cold start: one list, a reconcile of each lease) and read once it has
//! run as many reconciles as there are leases and [`COLD_START_SETTLE`] more
//! has passed. The leases are deleted at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::wire::RenewRequest;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::procfs::{self, Memory};
use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{Latency, ms};
use crate::{Error, Result, seed};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryAtCount {
    pub leases: usize,
    pub seed_seconds: f64,
    /// Seconds from the last lease created until the operator had acted on
    /// every one (its conditions written) and the apiserver served the last.
    pub settle_seconds: f64,
    /// Once both caches hold every lease, before any renew.
    pub at_rest: HashMap<String, Memory>,
    /// The renew round: each lease once, spread over `renew_period_seconds`.
    pub renew_period_seconds: f64,
    pub renew: Latency,
    pub renew_errors: usize,
    /// After the renew round.
    pub after_renews: HashMap<String, Memory>,
    /// A fresh operator over all the leases: seconds from its start until it
    /// had run as many reconciles as there are leases, and its memory
    /// [`COLD_START_SETTLE`] later (its peak is the cold start's).
    #[serde(default)]
    pub cold_start_seconds: Option<f64>,
    #[serde(default)]
    pub operator_cold_start: Option<Memory>,
}

/// How long after a cold start's last reconcile the operator's memory is read:
/// an allocator that returns freed pages to the kernel does so within it.
pub const COLD_START_SETTLE: Duration = Duration::from_secs(15);

/// Processes whose memory the scenario reads.
const PROCESSES: [&str; 4] = ["apiserver", "operator", "kube-apiserver", "etcd"];

/// # Errors
/// When the stack cannot be restarted, a lease cannot be created, or the
/// caches do not settle within 5 minutes.
pub async fn run(stack: &mut Stack, profile: &Profile) -> Result<MemoryAtCount> {
    stack.restart().await?;
    let ns = stack.namespace("bench-memory").await;
    let api: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &ns);
    let count = profile.memory_leases;
    let ttl = profile.memory_ttl_seconds;
    let holder = |i: usize| format!("bench/holder-{i}");
    let name = |i: usize| format!("lease-{i:05}");

    let started = Instant::now();
    let tokens: Vec<i32> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move { seed::held_lease(&api, &name(i), &holder(i), ttl).await }
        })
        .buffered(profile.create_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let seed_seconds = started.elapsed().as_secs_f64();

    let settled = Instant::now();
    let client = stack.client()?;
    wait_until_settled(&api, &client, &ns, &name(count - 1), count).await?;
    let settle_seconds = settled.elapsed().as_secs_f64();
    let at_rest = memory(stack);

    let errors = Arc::new(AtomicUsize::new(0));
    let pause = profile.memory_renew_period.div_f64(count as f64);
    let round_start = Instant::now();
    let latencies: Vec<f64> = futures::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, fencing_token)| {
            let (client, ns, errors) = (client.clone(), ns.clone(), errors.clone());
            let due = round_start + pause.mul_f64(i as f64);
            let request = RenewRequest { holder: holder(i), fencing_token, ttl_seconds: ttl };
            async move {
                tokio::time::sleep_until(due).await;
                let ok = client.renew(&ns, &name(i), &request).await.is_ok();
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                ok.then(|| ms(due.elapsed()))
            }
        })
        .buffer_unordered(count)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let after_renews = memory(stack);

    let restarted = Instant::now();
    stack.restart_operator().await?;
    wait_until_reconciled(stack, count).await?;
    let cold_start_seconds = restarted.elapsed().as_secs_f64();
    tokio::time::sleep(COLD_START_SETTLE).await;
    let operator_cold_start = memory(stack).remove("operator");

    // The next scenario starts with empty caches.
    api.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api.list(&ListParams::default().limit(1)).await?.items.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(MemoryAtCount {
        leases: count,
        seed_seconds,
        settle_seconds,
        at_rest,
        renew_period_seconds: profile.memory_renew_period.as_secs_f64(),
        renew: Latency::of(&latencies),
        renew_errors: errors.load(Ordering::Relaxed),
        after_renews,
        cold_start_seconds: Some(cold_start_seconds),
        operator_cold_start,
    })
}

/// Waits until the operator's `reconciliations` counter reaches `count`.
async fn wait_until_reconciled(stack: &Stack, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let text = stack.operator_metrics().await;
        let done = berth_testenv::prometheus::sum(&text, "berth_operator_reconciliations_total", &[]);
        if done >= count as f64 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Scenario(format!(
                "the restarted operator reconciled {done} of {count} leases within 5 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn memory(stack: &Stack) -> HashMap<String, Memory> {
    stack
        .pids()
        .into_iter()
        .filter(|(name, _)| PROCESSES.contains(name))
        .filter_map(|(name, pid)| Some((name.to_owned(), procfs::memory(pid)?)))
        .collect()
}

/// Waits until the operator has written its conditions on all `count`
/// leases and the apiserver serves the `last` one created.
async fn wait_until_settled(
    api: &Api<BerthLease>,
    client: &berth_client::Client,
    ns: &str,
    last: &str,
    count: usize,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut acted_on = 0;
        let mut params = ListParams::default().limit(1000);
        loop {
            let page = api.list(&params).await?;
            acted_on +=
                page.items.iter().filter(|l| l.status.as_ref().is_some_and(|s| !s.conditions.is_empty())).count();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        if acted_on == count && client.get(ns, last).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Scenario(format!("after 300 s the operator had acted on {acted_on} of {count} leases")));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
