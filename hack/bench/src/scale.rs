//! Scenario 2: the knee, side by side. Many leases, each renewed every
//! heartbeat, in ascending steps of lease counts; each step runs twice with
//! the same open-loop generator: through Berth (plus a share of contended
//! acquires), and as raw conditional status writes (`decide`, then
//! `replace_status` guarded by resourceVersion) of BerthLeases of the same
//! shape straight to kube-apiserver. The largest count that holds on each
//! side is its knee.
//!
//! Load is open-loop: every lease renews at its own phase of the heartbeat
//! (random, so the load is spread evenly), and a latency runs from the
//! moment the renew was DUE, not when it was sent, so a generator that falls
//! behind shows up in the figures instead of hiding them. Contended acquires
//! (another holder asking for a held lease, answered `acquired:false`) fire
//! at `contended_share` of the renew rate on the Berth side; a refused
//! acquire writes nothing, so the raw side has no counterpart.
//!
//! A step first creates its new leases on both sides (straight in
//! kube-apiserver, [`crate::seed`], nothing renewing meanwhile), then runs
//! each side in turn (the order flips every step): one heartbeat to settle,
//! then `scale_windows` windows of one heartbeat each; the side's figures
//! are the medians over its windows, and it holds when most of its windows
//! hold (p99 under the target, no error), so that one stall of the shared
//! machine in one window does not decide a step. The side at rest writes nothing: its
//! leases carry a TTL longer than the whole run, so none expires while the
//! other side measures (the write is the same whatever the TTL). The search
//! stops after a step where neither side holds, or when its budget is spent.
//! The scenario starts on fresh apiserver and operator processes.
//!
//! CPU is read from `/proc/<pid>/stat` per window (cores = CPU seconds per
//! wall second), memory from `/proc/<pid>/status` at the end of the Berth side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::rules::{self, Request};
use berth_api::wire::{AcquireRequest, RenewRequest};
use berth_client::Client;
use berth_testenv::prometheus::{bucket_delta, buckets, histogram_quantile};
use chrono::Utc;
use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procfs::{self, CpuMeter, Memory};
use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{Latency, median, ms};
use crate::{Result, seed};

/// The target p99 of a step that holds.
pub const P99_TARGET_MS: f64 = 100.0;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Window {
    pub renew: Latency,
    pub renew_errors: usize,
    pub acquire: Latency,
    pub acquire_errors: usize,
    /// Cores used over the window, by process.
    pub cpu_cores: HashMap<String, f64>,
    /// The Berth side's tail inside its apiserver; `None` on the raw side
    /// and in runs before it was measured.
    #[serde(default)]
    pub inside: Option<Inside>,
}

/// Where a renew's tail lies inside Berth's apiserver, from its histograms
/// read before and after a window (buckets ×2 from 1 ms and 0.1 ms,
/// interpolated): what is left of the client's p99 lies outside, in TLS,
/// the connection and the generator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inside {
    /// p99 of a successful renew in the apiserver's request-duration
    /// histogram: checks, the wait for a write slot, `decide`, the write.
    pub renew_p99_ms: f64,
    /// p99 of the wait for a write slot, of the requests that got one.
    pub queue_wait_p99_ms: f64,
}

impl Inside {
    fn between(before: &str, after: &str) -> Self {
        let p99 = |name: &str, labels: &[&str]| {
            let delta = bucket_delta(&buckets(before, name, labels), &buckets(after, name, labels));
            histogram_quantile(&delta, 0.99) * 1000.0
        };
        Self {
            renew_p99_ms: p99("berth_apiserver_http_request_duration_seconds", &["/renew\"", "status=\"200\""]),
            queue_wait_p99_ms: p99("berth_apiserver_write_queue_wait_seconds", &[]),
        }
    }
}

/// One step of the raw side: the same leases' count, written straight to kube-apiserver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawSide {
    pub windows: Vec<Window>,
    /// Medians over the windows (counts are sums).
    pub renew: Latency,
    pub renew_errors: usize,
    pub cpu_cores: HashMap<String, f64>,
    /// Most windows held: p99 under the target and no errors.
    pub holds: bool,
}

/// One step; the top-level figures are the Berth side's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// The count the step asked for.
    pub target_leases: usize,
    /// The count it reached (less when the budget ran out while growing).
    pub leases: usize,
    /// Seconds spent creating this step's new leases, both sides.
    pub grow_seconds: f64,
    /// Creates that failed (each is retried).
    pub create_errors: usize,
    pub windows: Vec<Window>,
    /// Medians over the windows (counts are sums).
    pub renew: Latency,
    pub renew_errors: usize,
    pub acquire: Latency,
    pub acquire_errors: usize,
    pub cpu_cores: HashMap<String, f64>,
    /// At the end of the Berth side, by process.
    pub memory: HashMap<String, Memory>,
    /// Most windows held: p99 under the target and no errors.
    pub holds: bool,
    /// The same step as raw conditional status writes; absent in runs before
    /// the side-by-side search.
    #[serde(default)]
    pub raw: Option<RawSide>,
}

impl Step {
    /// Medians over the windows of [`Inside`]; `None` when not measured.
    pub fn inside(&self) -> Option<Inside> {
        let insides: Vec<&Inside> = self.windows.iter().filter_map(|w| w.inside.as_ref()).collect();
        (!insides.is_empty()).then(|| Inside {
            renew_p99_ms: median(&insides.iter().map(|i| i.renew_p99_ms).collect::<Vec<_>>()),
            queue_wait_p99_ms: median(&insides.iter().map(|i| i.queue_wait_p99_ms).collect::<Vec<_>>()),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scale {
    pub heartbeat_seconds: f64,
    pub ttl_seconds: i32,
    pub contended_share: f64,
    pub windows_per_step: usize,
    pub steps: Vec<Step>,
    /// Steps not run because the budget was spent or both sides already failed.
    pub skipped_steps: Vec<usize>,
    /// Berth's knee: the largest step that held; 0 when none did.
    pub max_leases_holding: usize,
    /// The raw side's knee.
    #[serde(default)]
    pub raw_max_leases_holding: usize,
}

impl Scale {
    /// Berth's knee over the raw knee; `None` without a raw knee.
    pub fn knee_ratio(&self) -> Option<f64> {
        (self.raw_max_leases_holding > 0).then(|| self.max_leases_holding as f64 / self.raw_max_leases_holding as f64)
    }

    /// The largest ratio of Berth's renew p99 to the raw side's over the
    /// steps below the raw knee; `None` when no step is below it.
    pub fn worst_p99_ratio_below_raw_knee(&self) -> Option<(usize, f64)> {
        self.steps
            .iter()
            .filter(|s| s.leases < self.raw_max_leases_holding)
            .filter_map(|s| Some((s.leases, s.renew.p99_ms / s.raw.as_ref()?.renew.p99_ms)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Renew,
    Acquire,
}

#[derive(Clone, Copy)]
struct Sample {
    /// When the request was due.
    due: Instant,
    latency_ms: f64,
    kind: Kind,
    ok: bool,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

/// What is known about a window before the samples are all in.
struct WindowSpan {
    start: Instant,
    end: Instant,
    cpu_cores: HashMap<String, f64>,
    inside: Option<Inside>,
}

/// One held lease of the generator, between the sides' turns.
struct Held {
    name: String,
    renew: RenewRequest,
    /// The raw side's last written copy (`None` until first read).
    copy: Option<BerthLease>,
}

/// Where a side's renews go.
#[derive(Clone)]
enum Writer {
    Berth { client: Client, ns: String },
    Raw { api: Api<BerthLease> },
}

/// One side: its namespace's leases and how they are renewed.
struct Side {
    writer: Writer,
    kube: Api<BerthLease>,
    leases: Vec<Held>,
}

/// What one side's turn at a step measured.
struct Turn {
    windows: Vec<Window>,
    memory: HashMap<String, Memory>,
}

/// # Errors
/// When the namespaces or client cannot be set up. Failed requests are
/// counted, not returned.
pub async fn run(stack: &mut Stack, profile: &Profile) -> Result<Scale> {
    stack.restart().await?;
    let berth_ns = stack.namespace("bench-scale").await;
    let raw_ns = stack.namespace("bench-scale-raw").await;
    let mut berth = Side {
        writer: Writer::Berth { client: stack.client()?, ns: berth_ns.clone() },
        kube: Api::namespaced(stack.kube.clone(), &berth_ns),
        leases: Vec::new(),
    };
    let raw_api: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &raw_ns);
    let mut raw = Side { writer: Writer::Raw { api: raw_api.clone() }, kube: raw_api, leases: Vec::new() };

    let mut steps = Vec::new();
    let mut skipped_steps = Vec::new();
    let budget_end = Instant::now() + profile.scale_budget;
    for (index, &target) in profile.scale_steps.iter().enumerate() {
        let both_failed = steps.last().is_some_and(|s: &Step| !s.holds && !s.raw.as_ref().is_some_and(|r| r.holds));
        if Instant::now() >= budget_end || both_failed {
            skipped_steps.push(target);
            continue;
        }
        let started = Instant::now();
        let mut create_errors = berth.grow_to(target, budget_end, profile).await;
        create_errors += raw.grow_to(berth.leases.len(), budget_end, profile).await;
        let grow_seconds = started.elapsed().as_secs_f64();
        let leases = berth.leases.len().min(raw.leases.len());
        let (berth_turn, raw_turn) = if index % 2 == 0 {
            let b = berth.turn(stack, profile).await;
            (b, raw.turn(stack, profile).await)
        } else {
            let r = raw.turn(stack, profile).await;
            (berth.turn(stack, profile).await, r)
        };
        let mut step = step(leases, grow_seconds, create_errors, berth_turn.windows, berth_turn.memory);
        step.target_leases = target;
        step.raw = Some(raw_side(raw_turn.windows));
        eprintln!(
            "[bench] scale: {leases} leases: Berth p99 {:.1} ms ({} errors), raw p99 {:.1} ms",
            step.renew.p99_ms,
            step.renew_errors,
            step.raw.as_ref().map_or(0.0, |r| r.renew.p99_ms)
        );
        steps.push(step);
    }
    let knee = |holds: fn(&Step) -> bool| steps.iter().filter(|s| holds(s)).map(|s| s.leases).max().unwrap_or(0);
    Ok(Scale {
        heartbeat_seconds: profile.heartbeat.as_secs_f64(),
        ttl_seconds: profile.scale_ttl_seconds,
        contended_share: profile.contended_share,
        windows_per_step: profile.scale_windows,
        max_leases_holding: knee(|s| s.holds),
        raw_max_leases_holding: knee(|s| s.raw.as_ref().is_some_and(|r| r.holds)),
        steps,
        skipped_steps,
    })
}

impl Side {
    /// Creates leases (straight in kube-apiserver, see [`seed`]) until there are
    /// `target` or `until` has passed; returns how many creates failed.
    async fn grow_to(&mut self, target: usize, until: Instant, profile: &Profile) -> usize {
        let from = self.leases.len();
        let errors = Arc::new(AtomicUsize::new(0));
        let ttl = profile.scale_ttl_seconds;
        let mut created = futures::stream::iter(from..target.max(from))
            .take_while(|_| std::future::ready(Instant::now() < until))
            .map(|i| {
                let (kube, errors) = (self.kube.clone(), errors.clone());
                async move {
                    let (name, holder) = (format!("lease-{i:05}"), format!("bench/holder-{i}"));
                    for _ in 0..5 {
                        match seed::held_lease(&kube, &name, &holder, ttl).await {
                            Ok(fencing_token) => return Some((i, name, holder, fencing_token)),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    None
                }
            })
            .buffer_unordered(profile.create_concurrency);
        let mut new = Vec::new();
        while let Some(lease) = created.next().await {
            if let Some(lease) = lease {
                new.push(lease);
            }
        }
        // In index order, so both sides hold the same names.
        new.sort_by_key(|l| l.0);
        for (_, name, holder, fencing_token) in new {
            let renew = RenewRequest { holder, fencing_token, ttl_seconds: ttl };
            self.leases.push(Held { name, renew, copy: None });
        }
        errors.load(Ordering::Relaxed)
    }

    /// Renews every lease of the side for one settling heartbeat and
    /// `scale_windows` measured ones, then stops.
    async fn turn(&mut self, stack: &Stack, profile: &Profile) -> Turn {
        let samples: Samples = Arc::default();
        let (stop_tx, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let count = self.leases.len();
        for held in self.leases.drain(..) {
            let first = Instant::now() + profile.heartbeat.mul_f64(fastrand::f64());
            tasks.spawn(renew_loop(self.writer.clone(), held, first, profile.heartbeat, samples.clone(), stop.clone()));
        }
        let contenders = match &self.writer {
            Writer::Berth { client, ns } => Some(tokio::spawn(contenders(
                client.clone(),
                ns.clone(),
                profile.clone(),
                count,
                samples.clone(),
                stop.clone(),
            ))),
            Writer::Raw { .. } => None,
        };
        tokio::time::sleep(profile.heartbeat).await;
        let berth_side = matches!(self.writer, Writer::Berth { .. });
        let mut spans = Vec::new();
        for _ in 0..profile.scale_windows {
            let meter = CpuMeter::start(stack.pids());
            let before = if berth_side { Some(stack.apiserver_metrics().await) } else { None };
            let start = Instant::now();
            tokio::time::sleep(profile.heartbeat).await;
            let end = Instant::now();
            let inside = match before {
                Some(before) => Some(Inside::between(&before, &stack.apiserver_metrics().await)),
                None => None,
            };
            let cpu_cores = meter.cores().into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
            spans.push(WindowSpan { start, end, cpu_cores, inside });
        }
        let memory =
            stack.pids().into_iter().filter_map(|(name, pid)| Some((name.to_owned(), procfs::memory(pid)?))).collect();
        stop_tx.send_replace(true);
        while let Some(held) = tasks.join_next().await {
            if let Ok(held) = held {
                self.leases.push(held);
            }
        }
        if let Some(contenders) = contenders {
            let _ = contenders.await;
        }
        self.leases.sort_by(|a, b| a.name.cmp(&b.name));
        let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
        Turn { windows: spans.into_iter().map(|span| window(&samples, span)).collect(), memory }
    }
}

fn window(samples: &[Sample], span: WindowSpan) -> Window {
    let mut renew = Vec::new();
    let mut acquire = Vec::new();
    let (mut renew_errors, mut acquire_errors) = (0, 0);
    for s in samples.iter().filter(|s| s.due >= span.start && s.due < span.end) {
        match (s.kind, s.ok) {
            (Kind::Renew, true) => renew.push(s.latency_ms),
            (Kind::Renew, false) => renew_errors += 1,
            (Kind::Acquire, true) => acquire.push(s.latency_ms),
            (Kind::Acquire, false) => acquire_errors += 1,
        }
    }
    Window {
        renew: Latency::of(&renew),
        renew_errors,
        acquire: Latency::of(&acquire),
        acquire_errors,
        cpu_cores: span.cpu_cores,
        inside: span.inside,
    }
}

fn median_cores(windows: &[Window]) -> HashMap<String, f64> {
    let mut cpu_cores = HashMap::new();
    for name in windows.iter().flat_map(|w| w.cpu_cores.keys()) {
        let values: Vec<f64> = windows.iter().filter_map(|w| w.cpu_cores.get(name).copied()).collect();
        cpu_cores.insert(name.clone(), median(&values));
    }
    cpu_cores
}

fn step(
    leases: usize,
    grow_seconds: f64,
    create_errors: usize,
    windows: Vec<Window>,
    memory: HashMap<String, Memory>,
) -> Step {
    let renew = Latency::median_of(&windows.iter().map(|w| w.renew.clone()).collect::<Vec<_>>());
    let acquire = Latency::median_of(&windows.iter().map(|w| w.acquire.clone()).collect::<Vec<_>>());
    let renew_errors = windows.iter().map(|w| w.renew_errors).sum();
    let acquire_errors = windows.iter().map(|w| w.acquire_errors).sum();
    let holds = most_hold(&windows, true);
    Step {
        target_leases: leases,
        leases,
        grow_seconds,
        create_errors,
        renew,
        renew_errors,
        acquire,
        acquire_errors,
        cpu_cores: median_cores(&windows),
        memory,
        holds,
        windows,
        raw: None,
    }
}

/// Whether more than half of `windows` hold: renews under the target p99
/// and no failed renew (nor, `with_acquires`, a failed acquire).
fn most_hold(windows: &[Window], with_acquires: bool) -> bool {
    let holds = |w: &&Window| {
        w.renew.count > 0
            && w.renew.p99_ms < P99_TARGET_MS
            && w.renew_errors == 0
            && (!with_acquires || w.acquire_errors == 0)
    };
    2 * windows.iter().filter(holds).count() > windows.len()
}

fn raw_side(windows: Vec<Window>) -> RawSide {
    let renew = Latency::median_of(&windows.iter().map(|w| w.renew.clone()).collect::<Vec<_>>());
    let renew_errors = windows.iter().map(|w| w.renew_errors).sum();
    let holds = most_hold(&windows, false);
    RawSide { cpu_cores: median_cores(&windows), renew, renew_errors, holds, windows }
}

/// Renews one lease every `heartbeat` from `first` until `stop`; returns it
/// for the side's next turn. On the Berth side a lost lease (a refused
/// renew) counts as an error and is acquired again.
async fn renew_loop(
    writer: Writer,
    mut held: Held,
    first: Instant,
    heartbeat: Duration,
    samples: Samples,
    mut stop: watch::Receiver<bool>,
) -> Held {
    let mut due = first;
    let mut lost = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|stop| *stop) => return held,
        }
        let ok = match &writer {
            Writer::Berth { client, ns } => berth_renew(client, ns, &mut held, &mut lost).await,
            Writer::Raw { api } => raw_renew(api, &mut held).await,
        };
        let latency_ms = ms(due.elapsed());
        samples.lock().expect("samples lock").push(Sample { due, latency_ms, kind: Kind::Renew, ok });
        due += heartbeat;
        // Fallen more than a heartbeat behind: skip the missed renews.
        let now = Instant::now();
        if due < now {
            due = now;
        }
    }
}

async fn berth_renew(client: &Client, ns: &str, held: &mut Held, lost: &mut bool) -> bool {
    if *lost {
        let renew = &held.renew;
        let request =
            AcquireRequest { holder: renew.holder.clone(), ttl_seconds: renew.ttl_seconds, ..Default::default() };
        if let Ok(grant) = client.acquire(ns, &held.name, &request).await {
            held.renew.fencing_token = grant.fencing_token;
            *lost = false;
        }
        return false;
    }
    match client.renew(ns, &held.name, &held.renew).await {
        Ok(_) => true,
        Err(berth_client::Error::NotAcquired { .. }) => {
            *lost = true;
            false
        }
        Err(_) => false,
    }
}

/// The raw side's renew: `decide` on the last written copy, then one
/// `replace_status` guarded by its resourceVersion, rereading on a conflict,
/// as the apiserver does from its cache.
async fn raw_renew(api: &Api<BerthLease>, held: &mut Held) -> bool {
    let params = PostParams { dry_run: false, field_manager: Some("berth-bench".to_owned()) };
    for _ in 0..8 {
        let mut lease = match held.copy.take() {
            Some(copy) => copy,
            None => match api.get(&held.name).await {
                Ok(lease) => lease,
                Err(_) => return false,
            },
        };
        let renew = &held.renew;
        let request = Request::Renew {
            holder: &renew.holder,
            fencing_token: renew.fencing_token,
            ttl_seconds: renew.ttl_seconds,
        };
        let decision = rules::decide(&lease.spec, &lease.status.clone().unwrap_or_default(), &request, Utc::now());
        let Some(status) = decision.status else { return false };
        lease.metadata.managed_fields = None;
        lease.status = Some(status);
        match api.replace_status(&held.name, &params, &lease).await {
            Ok(written) => {
                held.copy = Some(written);
                return true;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(_) => return false,
        }
    }
    false
}

/// Contended acquires: another holder asks for a random held lease at
/// `contended_share` of the renew rate. `acquired:false` is the expected
/// answer; only a failed request is an error.
async fn contenders(
    client: Client,
    ns: String,
    profile: Profile,
    leases: usize,
    samples: Samples,
    mut stop: watch::Receiver<bool>,
) {
    let mut inflight = JoinSet::new();
    let mut due = Instant::now();
    let rate = profile.contended_share * leases as f64 / profile.heartbeat.as_secs_f64();
    // Ticks of at most 100 ms, each firing with the chance that gives the rate.
    let tick = if rate > 10.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::from_millis(100) };
    loop {
        due += tick;
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        if leases == 0 || fastrand::f64() >= rate * tick.as_secs_f64() {
            continue;
        }
        let (client, ns, samples) = (client.clone(), ns.clone(), samples.clone());
        let name = format!("lease-{:05}", fastrand::usize(0..leases));
        let request = AcquireRequest {
            holder: "bench/contender".to_owned(),
            ttl_seconds: profile.scale_ttl_seconds,
            ..Default::default()
        };
        let started = due;
        inflight.spawn(async move {
            let ok = matches!(client.acquire(&ns, &name, &request).await, Err(berth_client::Error::NotAcquired { .. }));
            let latency_ms = ms(started.elapsed());
            samples.lock().expect("samples lock").push(Sample { due: started, latency_ms, kind: Kind::Acquire, ok });
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(p99_ms: f64, renew_errors: usize, acquire_errors: usize) -> Window {
        let renew = Latency { count: 100, p50_ms: 5.0, p99_ms, max_ms: p99_ms };
        let acquire = Latency::default();
        Window { renew, renew_errors, acquire, acquire_errors, cpu_cores: HashMap::new(), inside: None }
    }

    #[test]
    fn a_step_holds_when_most_of_its_windows_hold() {
        let calm = window(40.0, 0, 0);
        let stall = window(280.0, 0, 0);
        assert!(most_hold(&[calm.clone(), stall.clone(), calm.clone(), calm.clone(), stall.clone()], true));
        assert!(!most_hold(&[stall.clone(), calm.clone(), stall.clone(), calm.clone(), stall.clone()], true));
        // A failed renew fails its window; a failed acquire only on the Berth side.
        let refused = window(40.0, 0, 1);
        assert!(!most_hold(&[refused.clone(), refused.clone(), calm.clone()], true));
        assert!(most_hold(&[refused.clone(), refused, calm], false));
        assert!(!most_hold(&[window(40.0, 1, 0)], false));
        assert!(!most_hold(&[], false));
    }
}
