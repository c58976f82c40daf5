//! One member lease, as two tasks joined by channels:
//! - the holder ([`hold`]) keeps this cluster's claim on the global lease
//!   with a [`LeaseKeeper`] and publishes what it learns;
//! - the gate ([`gate`]) turns that into the local state with
//!   [`state::decide`], applies the target action, writes the status, records
//!   Events, and wakes at the safe deadline so that a fence happens at that
//!   instant.
//!
//! All timing of the hold (safe deadline, renew and retry schedule, bounded
//! renews) is the keeper's; this file only carries decisions out.

use std::sync::Arc;
use std::time::Duration;

use berth_api::crd::{AppliedAction, Holder};
use berth_api::{BerthLease, BerthLeaseStatus, LeaseKey, LeaseState};
use berth_client::{Client as BerthClient, Error as BerthError, KeeperOptions, KeeperState, LeaseKeeper, Loss};
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::FIELD_MANAGER;
use crate::controller::{Context, act_on_target, follow_stop, publish, set_finalizer};
use crate::member::state::{self, Decision, Knowledge};
use crate::member::status::{Facts, Mirror, member_status};
use crate::plan::{self, FINALIZER, Note, TargetOutcome};
use crate::pod_gate::Standing;

/// How long a standby's waiting acquire asks the server to hold it.
const STANDBY_WAIT: Duration = Duration::from_secs(60);
/// Pause after a call that got no answer, before the next try.
const RETRY: Duration = Duration::from_secs(1);
/// How long a release action on the target may take before it is tried again.
const TARGET_BOUND: Duration = Duration::from_secs(2);
/// Drift of the target is corrected at least this often.
const RESYNC: Duration = Duration::from_secs(60);
/// At most one RenewFailed Event per lease in this period.
const RENEW_FAILED_EVERY: Duration = Duration::from_secs(60);
/// How often the pods of a fenced target are looked at while they stop.
const STOPPING_LOOK: Duration = Duration::from_millis(250);
/// How long deletion waits for the REST release before the finalizer goes anyway.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// What every claim of this operator shares.
pub struct Shared {
    pub ctx: Arc<Context>,
    pub berth: BerthClient,
    pub cluster_id: String,
}

/// What the holder last learned.
#[derive(Clone, Debug)]
struct Learned {
    knowledge: Knowledge,
    mirror: Mirror,
    /// Why the last call got no answer; `None` when it got one.
    unreachable: Option<String>,
}

/// What the gate asks of the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Hold,
    /// Release the global lease (the target is already released), then end.
    Release,
    /// The operator is stopping: end without releasing, so that the next
    /// operator resumes the tenure with the same token.
    Abandon,
}

/// Starts the claim of `lease`. Send newer versions of the lease on the
/// returned sender; drop it when the lease is gone. The claim ends when the
/// lease's deletion is done, or when `stopping` turns true.
pub fn spawn(
    shared: Arc<Shared>,
    lease: BerthLease,
    stopping: watch::Receiver<bool>,
) -> watch::Sender<Arc<BerthLease>> {
    let (lease_tx, lease_rx) = watch::channel(Arc::new(lease));
    let since = Instant::now();
    let learned = Learned { knowledge: Knowledge::Nothing { since }, mirror: Mirror::default(), unreachable: None };
    let (learned_tx, learned_rx) = watch::channel(learned);
    let (command_tx, command_rx) = watch::channel(Command::Hold);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(hold(shared.clone(), lease_rx.clone(), learned_tx, command_rx, done_tx));
    tokio::spawn(gate(shared, lease_rx, learned_rx, command_tx, done_rx, stopping));
    lease_tx
}

/// The TTL and the heartbeat the keeper will use for this lease's spec. The
/// heartbeat is also the grace of `unknown`: the time a first answer may take.
fn timing(lease: &BerthLease) -> (Duration, Duration) {
    let ttl = Duration::from_secs(lease.spec.ttl_seconds.max(1).unsigned_abs().into());
    let heartbeat = Duration::from_secs(lease.spec.heartbeat_interval_seconds.max(1).unsigned_abs().into());
    // The default margin is below every whole-second TTL, so this holds; the
    // keeper's own check refuses the acquire otherwise.
    let heartbeat = berth_client::Schedule::new(ttl, berth_client::default_margin(ttl), heartbeat)
        .map(|schedule| schedule.heartbeat)
        .unwrap_or(heartbeat);
    (ttl, heartbeat)
}

/// The holder: acquire (waiting when another holder was named), then follow the
/// keeper until the tenure ends, and again.
async fn hold(
    shared: Arc<Shared>,
    lease: watch::Receiver<Arc<BerthLease>>,
    learned: watch::Sender<Learned>,
    mut command: watch::Receiver<Command>,
    done: oneshot::Sender<()>,
) {
    let (namespace, name) = {
        let lease = lease.borrow();
        (lease.namespace().unwrap_or_default(), lease.name_any())
    };
    let metrics = shared.ctx.metrics.clone();
    let mut waiting = false;
    let mut client = shared.berth.clone();
    while *command.borrow_and_update() == Command::Hold {
        let (ttl, heartbeat) = timing(&lease.borrow());
        let wait = if waiting { STANDBY_WAIT } else { Duration::ZERO };
        let observer = metrics.clone();
        let options = KeeperOptions::new(&namespace, &name, &shared.cluster_id, ttl)
            .heartbeat(heartbeat)
            .wait(wait)
            .on_renew(move |report| observer.member_renew(report));
        let started = Instant::now();
        // Bounded: an acquire that hangs (a blackholed connection) is abandoned.
        let attempt = tokio::time::timeout(wait + heartbeat, LeaseKeeper::acquire(client.clone(), options));
        let result = tokio::select! {
            result = attempt => result,
            _ = command.changed() => continue,
        };
        metrics.member_acquire(started.elapsed());
        let keeper = match result {
            Ok(Ok(keeper)) => keeper,
            Ok(Err(BerthError::NotAcquired { current })) => {
                let mirror = view(&client, &namespace, &name, heartbeat).await;
                learned.send_replace(Learned {
                    knowledge: Knowledge::Refused { holder: current.holder },
                    mirror,
                    unreachable: None,
                });
                waiting = true;
                continue;
            }
            Ok(Err(error)) => {
                tracing::warn!(lease = %format!("{namespace}/{name}"), %error, "acquiring the global lease failed");
                learned.send_modify(|l| l.unreachable = Some(error.to_string()));
                retry_pause(&mut command).await;
                continue;
            }
            Err(_) => {
                let message = format!("no answer from the Berth apiserver within {:?}", wait + heartbeat);
                tracing::warn!(lease = %format!("{namespace}/{name}"), "{message}");
                learned.send_modify(|l| l.unreachable = Some(message));
                // The hung call's connection is suspect: the next try dials anew.
                client = client.with_fresh_connections().unwrap_or(client);
                continue;
            }
        };
        let grant = keeper.grant().clone();
        let now = Utc::now();
        let ours = Holder {
            identity: grant.holder.clone(),
            fencing_token: grant.fencing_token,
            acquired_at: grant.acquired_at.unwrap_or(now),
            renewed_at: now,
            expires_at: grant.expires_at.unwrap_or(now),
        };
        let mirror = Mirror { holders: vec![ours], fencing_token: Some(grant.fencing_token), transitions: None };
        let mut states = keeper.subscribe();
        loop {
            let state = states.borrow_and_update().clone();
            // The keeper gives up at the deadline only when no renew was answered.
            let unreachable = matches!(state, KeeperState::Lost(Loss::DeadlinePassed))
                .then(|| "no renew was answered before the safe deadline".to_owned());
            let knowledge = match state {
                KeeperState::Held { fencing_token, deadline, at_risk } => {
                    Knowledge::Granted { fencing_token, deadline, at_risk }
                }
                KeeperState::Lost(Loss::Refused { holder }) => Knowledge::Refused { holder },
                KeeperState::Lost(loss) => Knowledge::Lost { reason: loss.to_string() },
                KeeperState::Released => break,
            };
            let granted = matches!(knowledge, Knowledge::Granted { .. });
            // Wait for the lease only once another holder is named; after a
            // fence, ask at once, so that the claim shows who holds it
            // (standby) or resumes its own live tenure without delay.
            waiting = matches!(knowledge, Knowledge::Refused { .. });
            let mirror = if granted { mirror.clone() } else { view(&client, &namespace, &name, heartbeat).await };
            learned.send_replace(Learned { knowledge, mirror, unreachable });
            if !granted {
                break;
            }
            let commanded = tokio::select! {
                changed = states.changed() => if changed.is_err() { break } else { Command::Hold },
                _ = command.changed() => *command.borrow_and_update(),
            };
            match commanded {
                Command::Hold => {}
                Command::Release => {
                    if let Err(error) = keeper.release().await {
                        tracing::warn!(lease = %format!("{namespace}/{name}"), %error, "releasing the global lease failed; it expires at its TTL");
                    }
                    let _ = done.send(());
                    return;
                }
                Command::Abandon => {
                    // Not released: the next operator (a restart, the next
                    // leader) finds the tenure live and resumes it.
                    keeper.abandon().await;
                    return;
                }
            }
        }
    }
    let _ = done.send(());
}

/// Waits [`RETRY`], or less when a command comes.
async fn retry_pause(command: &mut watch::Receiver<Command>) {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => {}
        _ = command.changed() => {}
    }
}

/// The global lease's holders and token as the server shows them (bounded:
/// a mirror is a nicety, never worth a delay).
async fn view(client: &BerthClient, namespace: &str, name: &str, bound: Duration) -> Mirror {
    match tokio::time::timeout(bound, client.get(namespace, name)).await {
        Ok(Ok(view)) => Mirror {
            holders: view.holders,
            fencing_token: Some(view.fencing_token),
            transitions: Some(view.transitions),
        },
        _ => Mirror::default(),
    }
}

/// The gate: decides, acts, writes, waits, for as long as the lease exists.
async fn gate(
    shared: Arc<Shared>,
    mut lease_rx: watch::Receiver<Arc<BerthLease>>,
    mut learned: watch::Receiver<Learned>,
    command: watch::Sender<Command>,
    done: oneshot::Receiver<()>,
    mut stopping: watch::Receiver<bool>,
) {
    let ctx = shared.ctx.clone();
    let mut lease = lease_rx.borrow_and_update().clone();
    let stored = lease.status.as_ref().map(|s| s.state).unwrap_or_default();
    // The last state other than `unknown` this lease was in, for Events.
    let mut previous = if is_member_state(stored) && stored != LeaseState::Unknown { Some(stored) } else { None };
    let mut renew_failed_at: Option<Instant> = None;
    loop {
        if lease.metadata.deletion_timestamp.is_some() {
            return clean_up(&shared, &lease, command, done, true).await;
        }
        if !lease.finalizers().iter().any(|f| f == FINALIZER) {
            let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &lease.namespace().unwrap_or_default());
            match set_finalizer(&api, &lease, true).await {
                Ok(updated) => lease = Arc::new(updated),
                Err(error) => tracing::warn!(lease = %LeaseKey::of(&lease), %error, "adding the finalizer failed"),
            }
        }
        let (_, grace) = timing(&lease);
        let stop = Duration::from_secs(lease.spec.stop_seconds.max(0).unsigned_abs().into());
        let now = Instant::now();
        let known = learned.borrow_and_update().clone();
        let decision = state::decide(&known.knowledge, grace, stop, now);
        if let Some(standing) = Standing::of_member(&decision, now) {
            ctx.standings.set(&lease.namespace().unwrap_or_default(), &lease.name_any(), standing);
        }
        let mut notes = transition_notes(&shared, previous, &decision, &known, stop, &mut renew_failed_at, now);
        if decision.state != LeaseState::Unknown {
            if decision.state == LeaseState::Fenced && previous != Some(LeaseState::Fenced) {
                ctx.metrics.member_fenced();
            }
            previous = Some(decision.state);
        }
        let (outcome, settled) = apply_target(&ctx, &lease, &decision, &mut notes).await;
        let deadline = match known.knowledge {
            Knowledge::Granted { deadline, .. } if state::runs(decision.state) => Some(deadline),
            _ => None,
        };
        let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
        ctx.metrics.member_state(&namespace, &name, decision.state.as_str(), deadline, known.unreachable.is_none());
        let mut next = next_status(&shared, &lease, &decision, &known, outcome.as_ref());
        // A fenced target is stopped once its pods are gone; those that
        // would run past the deadline get a grace period that ends before it.
        let grace = crate::pods::stop_grace(decision.stop_by, Instant::now());
        let pods_stopping = match &outcome {
            Some(outcome) => follow_stop(&lease, &mut next, outcome, Some(grace), &ctx, &mut notes).await,
            None => false,
        };
        if let Some(written) = write_status(&shared, &lease, next).await {
            lease = Arc::new(written);
        }
        publish(&ctx, &lease, notes);

        let wake = match (settled, decision.wake_at) {
            // A target write that did not finish, or pods that still stop: look again soon.
            (false, _) => now + Duration::from_millis(200),
            (true, _) if pods_stopping => now + STOPPING_LOOK,
            (true, Some(at)) => at.min(now + RESYNC),
            (true, None) => now + RESYNC,
        };
        enum Next {
            Decide,
            Lease,
            Gone,
            Stop,
        }
        let next = tokio::select! {
            () = tokio::time::sleep_until(wake) => Next::Decide,
            changed = lease_rx.changed() => if changed.is_ok() { Next::Lease } else { Next::Gone },
            _ = learned.changed() => Next::Decide,
            _ = stopping.wait_for(|stop| *stop) => Next::Stop,
        };
        match next {
            Next::Decide => {}
            Next::Lease => lease = lease_rx.borrow_and_update().clone(),
            // The lease is gone without our cleanup (the finalizer was removed
            // by hand); unless member mode ended: it stops the claims before
            // it drops their senders.
            Next::Gone if !*stopping.borrow() => return clean_up(&shared, &lease, command, done, false).await,
            Next::Gone | Next::Stop => {
                command.send_replace(Command::Abandon);
                return;
            }
        }
    }
}

/// Exhaustive, so that a new state must be placed on one side.
fn is_member_state(state: LeaseState) -> bool {
    match state {
        LeaseState::Unknown | LeaseState::Standby | LeaseState::Held | LeaseState::AtRisk | LeaseState::Fenced => true,
        LeaseState::Available | LeaseState::Released | LeaseState::Expired => false,
    }
}

/// The Events of a change from `previous` to `decision.state`.
fn transition_notes(
    shared: &Shared,
    previous: Option<LeaseState>,
    decision: &Decision,
    known: &Learned,
    stop: Duration,
    renew_failed_at: &mut Option<Instant>,
    now: Instant,
) -> Vec<Note> {
    let id = &shared.cluster_id;
    let was_running = previous.is_some_and(state::runs);
    let mut notes = Vec::new();
    if previous == Some(decision.state) {
        return notes;
    }
    match (&known.knowledge, decision.state) {
        (Knowledge::Granted { fencing_token, .. }, LeaseState::Held | LeaseState::AtRisk) if !was_running => {
            notes.push(Note::ClusterHolds { cluster: id.clone(), fencing_token: *fencing_token });
        }
        _ => {}
    }
    match decision.state {
        LeaseState::AtRisk if renew_failed_at.is_none_or(|at| now >= at + RENEW_FAILED_EVERY) => {
            *renew_failed_at = Some(now);
            notes.push(Note::RenewFailed);
        }
        LeaseState::Standby if was_running => {
            let holder = match &known.knowledge {
                Knowledge::Refused { holder } if !holder.is_empty() => holder.clone(),
                _ => "another holder".to_owned(),
            };
            notes.push(Note::Lost { holder });
        }
        LeaseState::Fenced => {
            let why = match &known.knowledge {
                Knowledge::Lost { reason } => reason.clone(),
                Knowledge::Nothing { .. } => "no answer from the Berth apiserver since the operator started".to_owned(),
                _ if stop.is_zero() => "the safe deadline passed without a confirmed renew".to_owned(),
                _ => format!(
                    "no renew was confirmed by {} s before the safe deadline (the lease's stopSeconds), \
                     so that the workload stops before the deadline",
                    stop.as_secs()
                ),
            };
            notes.push(Note::Fenced { why });
        }
        _ => {}
    }
    notes
}

/// Applies the decided action to the target, bounded so that an acquire
/// action never lands after the safe deadline is known to have passed.
/// Returns the outcome (when there is one) and whether the step settled.
async fn apply_target(
    ctx: &Context,
    lease: &BerthLease,
    decision: &Decision,
    notes: &mut Vec<Note>,
) -> (Option<TargetOutcome>, bool) {
    let (Some(action), Some(target)) = (decision.action, lease.spec.target.as_ref()) else {
        return (None, true);
    };
    let namespace = lease.namespace().unwrap_or_default();
    let bound = match (action, decision.wake_at) {
        (AppliedAction::Acquire, Some(deadline)) => {
            deadline.saturating_duration_since(Instant::now()).min(TARGET_BOUND)
        }
        _ => TARGET_BOUND,
    };
    let fencing_token = lease.status.as_ref().map_or(0, |s| s.fencing_token);
    match tokio::time::timeout(bound, act_on_target(lease, &namespace, target, action, fencing_token, ctx, notes)).await
    {
        Ok(Ok(outcome)) => (Some(outcome), true),
        Ok(Err(error)) => {
            tracing::warn!(lease = %LeaseKey::of(lease), %error, "acting on the target failed");
            (None, false)
        }
        Err(_) => {
            tracing::warn!(lease = %LeaseKey::of(lease), "acting on the target took too long");
            (None, false)
        }
    }
}

/// The member status to hold after this decision.
fn next_status(
    shared: &Shared,
    lease: &BerthLease,
    decision: &Decision,
    known: &Learned,
    outcome: Option<&TargetOutcome>,
) -> BerthLeaseStatus {
    let previous = lease.status.clone().unwrap_or_default();
    let facts = Facts {
        cluster_id: &shared.cluster_id,
        state: decision.state,
        mirror: &known.mirror,
        unreachable: known.unreachable.as_deref(),
        generation: lease.metadata.generation,
    };
    let now = Utc::now();
    let mut next = member_status(&previous, &facts, now);
    match (outcome, &lease.spec.target) {
        (Some(outcome), _) => {
            plan::record_target(&mut next, Some(outcome), lease.metadata.generation, now);
        }
        (None, None) => {
            plan::record_target(&mut next, None, lease.metadata.generation, now);
        }
        (None, Some(_)) => {}
    }
    next
}

/// Writes `next` when it differs from the stored status.
async fn write_status(shared: &Shared, lease: &BerthLease, next: BerthLeaseStatus) -> Option<BerthLease> {
    if lease.status.clone().unwrap_or_default() == next {
        return None;
    }
    let api: Api<BerthLease> = Api::namespaced(shared.ctx.client.clone(), &lease.namespace().unwrap_or_default());
    let mut object = lease.clone();
    object.status = Some(next);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    // Guarded by the resourceVersion it was read at; on a conflict the newer
    // version arrives from the watch and the gate decides again.
    match api.replace_status(&lease.name_any(), &params, &object).await {
        Ok(written) => {
            shared.ctx.metrics.status_write(false);
            Some(written)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            shared.ctx.metrics.status_write(true);
            None
        }
        Err(error) => {
            tracing::warn!(lease = %LeaseKey::of(lease), %error, "writing the member status failed");
            None
        }
    }
}

/// Deletion: releaseAction on the target, then the REST release, then the
/// finalizer goes (when the object still has it).
async fn clean_up(
    shared: &Shared,
    lease: &BerthLease,
    command: watch::Sender<Command>,
    done: oneshot::Receiver<()>,
    remove_finalizer: bool,
) {
    let ctx = &shared.ctx;
    let (namespace, name) = (lease.namespace().unwrap_or_default(), lease.name_any());
    // The pods the gate let through stop at once, before the global lease is released.
    ctx.standings.set(&namespace, &name, Standing::Stops { by: Some(Instant::now()) });
    let release =
        Decision { state: LeaseState::Standby, action: Some(AppliedAction::Release), wake_at: None, stop_by: None };
    loop {
        let mut notes = Vec::new();
        let (outcome, settled) = apply_target(ctx, lease, &release, &mut notes).await;
        publish(ctx, lease, notes);
        let blocked = matches!(outcome, Some(TargetOutcome::Forbidden { .. }));
        if settled && !blocked {
            break;
        }
        // A target that cannot be released yet holds the deletion: the workload
        // must not run on unseen while the global lease is given up.
        tokio::time::sleep(RETRY).await;
    }
    command.send_replace(Command::Release);
    if tokio::time::timeout(RELEASE_BOUND, done).await.is_err() {
        tracing::warn!(lease = %LeaseKey::of(lease), "the REST release did not finish; the global lease expires at its TTL");
    }
    ctx.metrics.member_forget(&namespace, &name);
    ctx.standings.forget(&namespace, &name);
    if remove_finalizer {
        let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &namespace);
        loop {
            let Ok(Some(current)) = api.get_opt(&name).await else { return };
            match set_finalizer(&api, &current, false).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(lease = %LeaseKey::of(lease), %error, "removing the finalizer failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
