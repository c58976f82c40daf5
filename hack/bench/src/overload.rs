//! Scenario 8: past the knee. Holders that behave as `LeaseKeeper`s do
//! (the keeper's own arithmetic, [`berth_client::Schedule`]: renew every
//! heartbeat, a renew bounded by the safe deadline, `Retry-After` honoured
//! when it ends inside the deadline, else a quick retry) first hold 1.2× the
//! knee's lease count for `overload_hold`, then 2× the knee (the rest of the
//! holders join) for `overload_windows` heartbeats.
//!
//! A failed renew is counted by cause: shed (503, with its answer's
//! latency), refused (`acquired:false`: the server let the lease expire), or
//! another error (a timeout at the renew bound, a transport error, another
//! status). A lease is LOST when its holder passes its safe deadline without
//! a renew, or its renew is refused: counted once per loss, apart from the
//! failed requests (a shed renew retried in time costs the holder nothing);
//! the holder then acquires it again, as an application would.
//!
//! The leases are created straight in kube-apiserver with a long TTL, so the
//! holders that join late find theirs held; each renew then asks for the
//! scenario's TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::wire::{AcquireRequest, RenewRequest};
use berth_client::{Client, Schedule};
use futures::StreamExt;
use kube::Api;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procfs::CpuMeter;
use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{Latency, median, ms};
use crate::{Result, seed};

/// The TTL the leases are created with, before their holders start.
const SEED_TTL_SECONDS: i32 = 3_600;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    pub leases: usize,
    /// The load as a multiple of the knee's.
    pub load: f64,
    pub seconds: f64,
    /// Windows of one heartbeat: rates and latencies are medians over them.
    pub windows: usize,
    /// Renew requests sent per second, retries included.
    pub offered_per_second: f64,
    /// Successful renews per second.
    pub renewed_per_second: f64,
    /// Successful renews, from the moment each was due.
    pub renew: Latency,
    /// Shed answers (503), from the moment each was sent.
    pub shed: Latency,
    pub failed_shed: usize,
    /// Refused renews (`acquired:false`): the lease had expired on the server.
    pub failed_refused: usize,
    /// Timeouts at the renew bound, transport errors, other statuses.
    pub failed_other: usize,
    /// Holders that passed their safe deadline without a renew.
    pub leases_lost: usize,
    /// Acquires of lost leases that were granted again.
    pub reacquired: usize,
    /// Cores by process over the phase's measured span.
    pub cpu_cores: HashMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overload {
    /// The knee (Berth's largest lease count that held), and whether it came
    /// from this run's scale search (else from the profile).
    pub knee_leases: usize,
    pub knee_from_scale: bool,
    pub knee_renews_per_second: f64,
    pub heartbeat_seconds: f64,
    pub ttl_seconds: i32,
    pub margin_ms: f64,
    /// 1.2× the knee, held for `overload_hold`.
    pub sustained: Phase,
    /// 2× the knee.
    pub double: Phase,
}

impl Overload {
    /// Successful renews/s at 2× over the knee's renew rate.
    pub fn goodput_ratio(&self) -> f64 {
        self.double.renewed_per_second / self.knee_renews_per_second
    }

    /// Renew requests sent at 2× (retries included) per renew due: each
    /// lease is due once a heartbeat.
    pub fn requests_per_renew_due(&self) -> f64 {
        let due_per_second = self.double.leases as f64 / self.heartbeat_seconds;
        self.double.offered_per_second / due_per_second
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Renewed,
    Shed,
    Refused,
    Other,
    /// The holder passed its safe deadline (recorded when it noticed).
    Lost,
    Reacquired,
}

#[derive(Clone, Copy)]
struct Event {
    /// When the request was sent (for `Lost`: when it was noticed).
    at: Instant,
    outcome: Outcome,
    /// From due (renewed) or from sent (the others).
    latency_ms: f64,
}

type Events = Arc<Mutex<Vec<Event>>>;

/// # Errors
/// When the namespace, the client or the leases cannot be set up.
pub async fn run(stack: &Stack, profile: &Profile, knee: Option<usize>) -> Result<Overload> {
    let (knee_leases, knee_from_scale) = match knee {
        Some(k) if k > 0 => (k, true),
        _ => (profile.overload_fallback_knee, false),
    };
    let heartbeat = profile.heartbeat;
    let ttl = Duration::from_secs(profile.overload_ttl_seconds.unsigned_abs().into());
    let schedule = Schedule::new(ttl, berth_client::default_margin(ttl), heartbeat)?;
    let ns = stack.namespace("bench-overload").await;
    let client = stack.client()?;
    let api: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &ns);
    let sustained_count = (knee_leases as f64 * 1.2).round() as usize;
    let double_count = knee_leases * 2;
    let tokens = seed_all(&api, double_count, profile.create_concurrency).await?;

    let events: Events = Arc::default();
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let start = |range: std::ops::Range<usize>, tasks: &mut JoinSet<()>| {
        for i in range {
            let holder = Holder {
                client: client.clone(),
                ns: ns.clone(),
                name: lease_name(i),
                request: RenewRequest {
                    holder: holder_name(i),
                    fencing_token: tokens[i],
                    ttl_seconds: profile.overload_ttl_seconds,
                },
                schedule,
            };
            let first = Instant::now() + heartbeat.mul_f64(fastrand::f64());
            tasks.spawn(holder.run(first, events.clone(), stop.clone()));
        }
    };

    eprintln!("[bench] overload: {sustained_count} leases (1.2× the knee) for {:?}", profile.overload_hold);
    start(0..sustained_count, &mut tasks);
    tokio::time::sleep(heartbeat).await;
    let sustained = measure(stack, &events, profile.overload_hold, heartbeat, sustained_count, 1.2).await;
    eprintln!("[bench] overload: {double_count} leases (2× the knee)");
    start(sustained_count..double_count, &mut tasks);
    tokio::time::sleep(heartbeat).await;
    let double = measure(stack, &events, heartbeat * profile.overload_windows, heartbeat, double_count, 2.0).await;
    stop_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}

    Ok(Overload {
        knee_leases,
        knee_from_scale,
        knee_renews_per_second: knee_leases as f64 / heartbeat.as_secs_f64(),
        heartbeat_seconds: heartbeat.as_secs_f64(),
        ttl_seconds: profile.overload_ttl_seconds,
        margin_ms: ms(schedule.margin),
        sustained,
        double,
    })
}

fn lease_name(i: usize) -> String {
    format!("lease-{i:05}")
}

fn holder_name(i: usize) -> String {
    format!("bench/keeper-{i}")
}

/// Creates `count` held leases; returns their fencing tokens by index.
async fn seed_all(api: &Api<BerthLease>, count: usize, concurrency: usize) -> Result<Vec<i32>> {
    let mut tokens = vec![0; count];
    let mut created = futures::stream::iter(0..count)
        // held_lease retries what can be retried (a dropped connection, 429, 5xx).
        .map(|i| async move {
            let token = seed::held_lease(api, &lease_name(i), &holder_name(i), SEED_TTL_SECONDS).await;
            token.map(|token| (i, token))
        })
        .buffer_unordered(concurrency);
    while let Some(result) = created.next().await {
        let (i, token) = result?;
        tokens[i] = token;
    }
    Ok(tokens)
}

/// Reads the events of the next `span` and the CPU over it. Rates and
/// latencies are medians over windows of one heartbeat; counts are sums.
async fn measure(
    stack: &Stack,
    events: &Events,
    span: Duration,
    heartbeat: Duration,
    leases: usize,
    load: f64,
) -> Phase {
    let meter = CpuMeter::start(stack.pids());
    let start = Instant::now();
    tokio::time::sleep(span).await;
    let end = Instant::now();
    let cpu_cores = meter.cores().into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
    let events: Vec<Event> =
        events.lock().expect("events lock").iter().filter(|e| e.at >= start && e.at < end).copied().collect();
    let windows = ((end - start).as_secs_f64() / heartbeat.as_secs_f64()).floor().max(1.0) as u32;
    let mut offered_per_second = Vec::new();
    let mut renewed_per_second = Vec::new();
    let (mut renew, mut shed) = (Vec::new(), Vec::new());
    for w in 0..windows {
        let (from, to) = (start + heartbeat * w, start + heartbeat * (w + 1));
        let window: Vec<&Event> = events.iter().filter(|e| e.at >= from && e.at < to).collect();
        let of = |o: Outcome| window.iter().filter(|e| e.outcome == o).map(|e| e.latency_ms).collect::<Vec<_>>();
        let offered = window.iter().filter(|e| !matches!(e.outcome, Outcome::Lost | Outcome::Reacquired)).count();
        offered_per_second.push(offered as f64 / heartbeat.as_secs_f64());
        renewed_per_second.push(of(Outcome::Renewed).len() as f64 / heartbeat.as_secs_f64());
        renew.push(Latency::of(&of(Outcome::Renewed)));
        shed.push(Latency::of(&of(Outcome::Shed)));
    }
    let count = |o: Outcome| events.iter().filter(|e| e.outcome == o).count();
    Phase {
        leases,
        load,
        seconds: (end - start).as_secs_f64(),
        windows: windows as usize,
        offered_per_second: median(&offered_per_second),
        renewed_per_second: median(&renewed_per_second),
        renew: Latency::median_of(&renew),
        shed: Latency::median_of(&shed.into_iter().filter(|l| l.count > 0).collect::<Vec<_>>()),
        failed_shed: count(Outcome::Shed),
        failed_refused: count(Outcome::Refused),
        failed_other: count(Outcome::Other),
        leases_lost: count(Outcome::Lost),
        reacquired: count(Outcome::Reacquired),
        cpu_cores,
    }
}

/// One generated holder: a lease renewed the way a `LeaseKeeper` renews it.
struct Holder {
    client: Client,
    ns: String,
    name: String,
    request: RenewRequest,
    schedule: Schedule,
}

impl Holder {
    async fn run(mut self, first: Instant, events: Events, mut stop: watch::Receiver<bool>) {
        let record = |at: Instant, outcome: Outcome, latency_ms: f64| {
            events.lock().expect("events lock").push(Event { at, outcome, latency_ms });
        };
        // The seeded grant outlives the schedule's TTL: count from now.
        let mut deadline = self.schedule.deadline(Instant::now());
        let mut due = first;
        let mut lost = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let sent = Instant::now();
            if !lost && sent >= deadline {
                lost = true;
                record(sent, Outcome::Lost, 0.0);
            }
            if lost {
                // As an application does after a loss: acquire again.
                let acquire = AcquireRequest {
                    holder: self.request.holder.clone(),
                    ttl_seconds: self.request.ttl_seconds,
                    ..Default::default()
                };
                let answer =
                    tokio::time::timeout(self.schedule.heartbeat, self.client.acquire(&self.ns, &self.name, &acquire))
                        .await;
                let now = Instant::now();
                match answer {
                    Ok(Ok(grant)) => {
                        self.request.fencing_token = grant.fencing_token;
                        deadline = self.schedule.deadline(sent);
                        due = self.schedule.next_renew(sent);
                        lost = false;
                        record(sent, Outcome::Reacquired, ms(now - sent));
                    }
                    Ok(Err(e)) => due = self.schedule.retry_after(now, e.retry_after(), now + self.schedule.heartbeat),
                    Err(_) => due = self.schedule.retry(now, now + self.schedule.heartbeat),
                }
                continue;
            }
            let bound = self.schedule.renew_bound(sent, deadline);
            let answer = tokio::time::timeout(bound, self.client.renew(&self.ns, &self.name, &self.request)).await;
            let now = Instant::now();
            let outcome = match answer {
                Ok(Ok(_)) => {
                    record(sent, Outcome::Renewed, ms(now - due));
                    deadline = self.schedule.deadline(sent);
                    due = self.schedule.next_renew(sent);
                    continue;
                }
                Ok(Err(berth_client::Error::Server { status: 503, retry_after, .. })) => {
                    due = self.schedule.retry_after(now, retry_after, deadline);
                    Outcome::Shed
                }
                Ok(Err(berth_client::Error::NotAcquired { .. })) => {
                    lost = true;
                    due = now;
                    Outcome::Refused
                }
                Ok(Err(_)) | Err(_) => {
                    due = self.schedule.retry(now, deadline);
                    Outcome::Other
                }
            };
            record(sent, outcome, ms(now - sent));
            if outcome == Outcome::Refused {
                // The server let the lease expire: lost, unless the deadline's
                // passing was already counted.
                record(now, Outcome::Lost, 0.0);
            }
        }
    }
}
