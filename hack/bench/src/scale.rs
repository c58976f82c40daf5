//! Scenarios 2 and 5: many leases, each renewed every heartbeat, plus a share
//! of contended acquires, in ascending steps of lease counts.
//!
//! Load is open-loop: every lease renews at its own phase of the heartbeat
//! (random, so the load is spread evenly), and a latency runs from the
//! moment the renew was DUE, not when it was sent, so a generator that falls
//! behind shows up in the figures instead of hiding them. Contended acquires
//! (another holder asking for a held lease, answered `acquired:false`) fire
//! at `contended_share` of the renew rate. A step grows the set to its count,
//! lets one heartbeat pass, then measures `scale_windows` windows of one
//! heartbeat each; its figures are the medians over those windows.
//!
//! Leases are created straight in kube-apiserver ([`crate::seed`]), not by
//! acquires through Berth: at the counts this machine cannot hold, an
//! overloaded Berth would stop the search from ever reaching the next step.
//! The scenario starts on fresh apiserver and operator processes.
//!
//! CPU is read from `/proc/<pid>/stat` per window (cores = CPU seconds per
//! wall second), memory from `/proc/<pid>/status` at the end of the step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::wire::{AcquireRequest, RenewRequest};
use berth_client::Client;
use futures::StreamExt;
use kube::Api;
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// The count the step asked for.
    pub target_leases: usize,
    /// The count it reached (less when the budget ran out while growing).
    pub leases: usize,
    /// Seconds spent creating this step's new leases.
    pub grow_seconds: f64,
    /// Creating acquires that failed (each is retried).
    pub create_errors: usize,
    pub windows: Vec<Window>,
    /// Medians over the windows (counts are sums).
    pub renew: Latency,
    pub renew_errors: usize,
    pub acquire: Latency,
    pub acquire_errors: usize,
    pub cpu_cores: HashMap<String, f64>,
    /// At the end of the step, by process.
    pub memory: HashMap<String, Memory>,
    /// p99 under the target and no errors.
    pub holds: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scale {
    pub heartbeat_seconds: f64,
    pub ttl_seconds: i32,
    pub contended_share: f64,
    pub windows_per_step: usize,
    pub steps: Vec<Step>,
    /// Steps not run because the budget was spent.
    pub skipped_steps: Vec<usize>,
    /// The largest step that held; 0 when none did.
    pub max_leases_holding: usize,
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
}

struct Fleet {
    client: Client,
    /// The namespace's BerthLeases in kube-apiserver, to create leases.
    kube: Api<BerthLease>,
    ns: String,
    profile: Profile,
    samples: Samples,
    stop: watch::Receiver<bool>,
    tasks: JoinSet<()>,
    /// Leases created and renewing.
    count: Arc<AtomicUsize>,
    /// The index of the next lease name (`lease-<index>`).
    next: usize,
}

/// # Errors
/// When the namespace or client cannot be set up. Failed requests are
/// counted, not returned.
pub async fn run(stack: &mut Stack, profile: &Profile) -> Result<Scale> {
    stack.restart().await?;
    let ns = stack.namespace("bench-scale").await;
    let (stop_tx, stop) = watch::channel(false);
    let mut fleet = Fleet {
        client: stack.client()?,
        kube: Api::namespaced(stack.kube.clone(), &ns),
        ns,
        profile: profile.clone(),
        samples: Arc::default(),
        stop,
        tasks: JoinSet::new(),
        count: Arc::default(),
        next: 0,
    };
    fleet.tasks.spawn(contenders(
        fleet.client.clone(),
        fleet.ns.clone(),
        profile.clone(),
        fleet.count.clone(),
        fleet.samples.clone(),
        fleet.stop.clone(),
    ));

    let mut spans = Vec::new();
    let mut grown = Vec::new();
    let mut skipped_steps = Vec::new();
    let budget_end = Instant::now() + profile.scale_budget;
    for &target in &profile.scale_steps {
        if Instant::now() >= budget_end {
            skipped_steps.push(target);
            continue;
        }
        let started = Instant::now();
        let create_errors = fleet.grow_to(target, budget_end).await;
        let leases = fleet.count.load(Ordering::Relaxed);
        grown.push((target, started.elapsed().as_secs_f64(), create_errors));
        tokio::time::sleep(profile.heartbeat).await;
        let mut windows = Vec::new();
        for _ in 0..profile.scale_windows {
            let meter = CpuMeter::start(stack.pids());
            let start = Instant::now();
            tokio::time::sleep(profile.heartbeat).await;
            windows.push(WindowSpan {
                start,
                end: Instant::now(),
                cpu_cores: meter.cores().into_iter().map(|(n, c)| (n.to_owned(), c)).collect(),
            });
        }
        let memory =
            stack.pids().into_iter().filter_map(|(name, pid)| Some((name.to_owned(), procfs::memory(pid)?))).collect();
        spans.push((leases, windows, memory));
    }
    stop_tx.send_replace(true);
    while fleet.tasks.join_next().await.is_some() {}

    let samples = std::mem::take(&mut *fleet.samples.lock().expect("samples lock"));
    let steps: Vec<Step> = spans
        .into_iter()
        .zip(grown)
        .map(|((leases, spans, memory), (target_leases, grow_seconds, create_errors))| {
            let windows: Vec<Window> = spans.into_iter().map(|span| window(&samples, span)).collect();
            let mut step = step(leases, grow_seconds, create_errors, windows, memory);
            step.target_leases = target_leases;
            step
        })
        .collect();
    Ok(Scale {
        heartbeat_seconds: profile.heartbeat.as_secs_f64(),
        ttl_seconds: profile.scale_ttl_seconds,
        contended_share: profile.contended_share,
        windows_per_step: profile.scale_windows,
        max_leases_holding: steps.iter().filter(|s| s.holds).map(|s| s.leases).max().unwrap_or(0),
        steps,
        skipped_steps,
    })
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
    }
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
    let mut cpu_cores = HashMap::new();
    for name in windows.iter().flat_map(|w| w.cpu_cores.keys()) {
        let values: Vec<f64> = windows.iter().filter_map(|w| w.cpu_cores.get(name).copied()).collect();
        cpu_cores.insert(name.clone(), median(&values));
    }
    let holds = renew.count > 0 && renew.p99_ms < P99_TARGET_MS && renew_errors == 0 && acquire_errors == 0;
    Step {
        target_leases: leases,
        leases,
        grow_seconds,
        create_errors,
        renew,
        renew_errors,
        acquire,
        acquire_errors,
        cpu_cores,
        memory,
        holds,
        windows,
    }
}

impl Fleet {
    /// Creates leases (straight in kube-apiserver, see [`seed`]) until there are
    /// `target` or `until` has passed, and starts renewing each; returns how
    /// many creates failed.
    async fn grow_to(&mut self, target: usize, until: Instant) -> usize {
        let from = self.next;
        let missing = target.saturating_sub(self.count.load(Ordering::Relaxed));
        self.next += missing;
        let errors = Arc::new(AtomicUsize::new(0));
        let mut created = futures::stream::iter(from..from + missing)
            .take_while(|_| std::future::ready(Instant::now() < until))
            .map(|i| {
                let (kube, errors) = (self.kube.clone(), errors.clone());
                let ttl = self.profile.scale_ttl_seconds;
                async move {
                    let (name, holder) = (format!("lease-{i:05}"), format!("bench/holder-{i}"));
                    for _ in 0..5 {
                        match seed::held_lease(&kube, &name, &holder, ttl).await {
                            Ok(fencing_token) => return Some((name, holder, fencing_token)),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    None
                }
            })
            .buffer_unordered(self.profile.create_concurrency);
        while let Some(lease) = created.next().await {
            let Some((name, holder, fencing_token)) = lease else { continue };
            let first = Instant::now() + self.profile.heartbeat.mul_f64(fastrand::f64());
            self.tasks.spawn(renew_loop(
                self.client.clone(),
                self.ns.clone(),
                name,
                RenewRequest { holder, fencing_token, ttl_seconds: self.profile.scale_ttl_seconds },
                first,
                self.profile.heartbeat,
                self.samples.clone(),
                self.stop.clone(),
            ));
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        errors.load(Ordering::Relaxed)
    }
}

/// Renews one lease every `heartbeat` from `first` until `stop`. A lost lease
/// (a refused renew) counts as an error and is acquired again.
#[allow(clippy::too_many_arguments)]
async fn renew_loop(
    client: Client,
    ns: String,
    name: String,
    mut renew: RenewRequest,
    first: Instant,
    heartbeat: Duration,
    samples: Samples,
    mut stop: watch::Receiver<bool>,
) {
    let mut due = first;
    let mut lost = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let ok = if lost {
            let request =
                AcquireRequest { holder: renew.holder.clone(), ttl_seconds: renew.ttl_seconds, ..Default::default() };
            if let Ok(grant) = client.acquire(&ns, &name, &request).await {
                renew.fencing_token = grant.fencing_token;
                lost = false;
            }
            false
        } else {
            match client.renew(&ns, &name, &renew).await {
                Ok(_) => true,
                Err(berth_client::Error::NotAcquired { .. }) => {
                    lost = true;
                    false
                }
                Err(_) => false,
            }
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

/// Contended acquires: another holder asks for a random held lease at
/// `contended_share` of the renew rate. `acquired:false` is the expected
/// answer; only a failed request is an error.
async fn contenders(
    client: Client,
    ns: String,
    profile: Profile,
    count: Arc<AtomicUsize>,
    samples: Samples,
    mut stop: watch::Receiver<bool>,
) {
    let mut inflight = JoinSet::new();
    let mut due = Instant::now();
    loop {
        let leases = count.load(Ordering::Relaxed);
        let rate = profile.contended_share * leases as f64 / profile.heartbeat.as_secs_f64();
        // Ticks of at most 100 ms, each firing with the chance that gives the
        // rate: the count grows during a step, and one pause taken from the
        // first few leases (200 s for one lease) would skip the windows.
        let tick = if rate > 10.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::from_millis(100) };
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
