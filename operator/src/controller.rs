//! The BerthLease controller: [`reconcile`] in the order of DESIGN.md §5, its
//! error policy, and the watches that drive it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::crd::{AppliedAction, TargetRef};
use berth_api::rules::{Outcome, is_held};
use berth_api::{BerthLease, BerthLeaseStatus};
use chrono::Utc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::http::Health;
use crate::metrics::Metrics;
use crate::plan::{self, FINALIZER, FinalizerStep, Note, Setting, TargetKind, TargetOutcome, TargetPlan, WriteOrder};
use crate::target::{self, Failure};

/// How long the target step of a reconcile may take before the status is
/// written without it: an expiry waits at most this long on a hung target.
const TARGET_DEADLINE: Duration = Duration::from_secs(2);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

/// Brings one BerthLease and its target in line with its spec and status.
///
/// # Guarantees
/// - Idempotent: a second run on an unchanged lease writes nothing.
/// - Order (DESIGN.md §5): finalizer, expiry, declared holder, target action,
///   status and conditions.
/// - Every status write is a `replace` guarded by `resourceVersion` under
///   field manager `berth-operator`; rule changes are computed by
///   [`berth_api::rules::decide`] only.
/// - An expiry, or a grant made elsewhere, costs one status write: the target
///   is written first and the status then carries both the rule changes and
///   `status.target` ([`plan::WriteOrder`]). Only the operator's own grant to a
///   declared holder is stored before its target is touched.
/// - A failing or hung target (see `TARGET_DEADLINE`) never holds back the
///   rule changes: they are written, then the reconcile fails and is retried.
/// - Events are recorded after the status write, in a task of their own.
/// - Wakes at the earliest `expiresAt` (or after [`plan::RESYNC`]).
///
/// # Errors
/// Conflicts and kube-apiserver failures, retried by [`error_policy`]. A target
/// that is missing, forbidden or unsupported is not an error: it is reported
/// in the `TargetReady` condition and an Event.
pub async fn reconcile(lease: Arc<BerthLease>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_lease((*lease).clone(), &ctx).await;
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Retries a failed reconcile: soon after a conflict, later after anything else.
pub fn error_policy(lease: Arc<BerthLease>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.metric_label());
    match error {
        // Expected now and then: the cache lagged behind a write, or a holder wrote first.
        Error::Conflict { .. } => {
            tracing::debug!(lease = %key(&lease), %error, "reconcile conflicted");
            Action::requeue(Duration::from_millis(200))
        }
        _ => {
            tracing::warn!(lease = %key(&lease), %error, "reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

fn key(lease: &BerthLease) -> String {
    format!("{}/{}", lease.namespace().unwrap_or_default(), lease.name_any())
}

async fn reconcile_lease(mut lease: BerthLease, ctx: &Context) -> Result<Action> {
    let namespace = lease.namespace().ok_or_else(|| Error::MissingNamespace(lease.name_any()))?;
    let api: Api<BerthLease> = Api::namespaced(ctx.client.clone(), &namespace);

    // 1. Finalizer, only while a target is set.
    let has_finalizer = lease.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = lease.metadata.deletion_timestamp.is_some();
    match FinalizerStep::for_lease(deleting, lease.spec.target.is_some(), has_finalizer) {
        FinalizerStep::Cleanup => {
            release_on_delete(&lease, &namespace, ctx).await?;
            set_finalizer(&api, &lease, false).await?;
            return Ok(Action::await_change());
        }
        FinalizerStep::Gone => return Ok(Action::await_change()),
        FinalizerStep::Add => lease = set_finalizer(&api, &lease, true).await?,
        FinalizerStep::Remove => lease = set_finalizer(&api, &lease, false).await?,
        FinalizerStep::Keep => {}
    }

    // 2 and 3. Expiry, then the declared holder, with the shared rules. The
    // target follows the status they decide, before that status is written
    // (plan::WriteOrder), so that an expiry costs one status write.
    let now = Utc::now();
    let before = lease.status.clone().unwrap_or_default();
    let facts = plan::lease_facts(&lease.spec, &before, lease.metadata.generation, now);
    let mut notes = Vec::new();
    if let Some(Outcome::NotAcquired { refusal, current }) = &facts.declared {
        let holder = lease.spec.holder_identity.clone().unwrap_or_default();
        let by = current.as_ref().map(|h| format!(", held by {}", h.identity)).unwrap_or_default();
        let note = format!("could not acquire for declared holder {holder}: {refusal:?}{by}");
        notes.push(Note::warning("DeclaredHolderRefused", note));
    }
    notes.extend(plan::partial_expiry_note(&facts));
    let mut stored = before.clone();
    let mut next = facts.status.clone();
    if next != stored && plan::write_order(&before, &next, now) == WriteOrder::GrantFirst {
        lease = write_status(&api, &lease, next.clone(), ctx).await?;
        expired_written(ctx, &lease, &facts);
        notes.extend(plan::transition_notes(&before, &next));
        publish(ctx, &lease, std::mem::take(&mut notes));
        stored = next.clone();
    }

    // 4. The target: acquireAction while a holder is live, releaseAction otherwise.
    let mut target_notes = Vec::new();
    let target_failed = match lease.spec.target.clone() {
        Some(target) => {
            let applied = plan::phase(is_held(&next, now));
            let step = act_on_target(&lease, &namespace, &target, applied, ctx, &mut target_notes);
            match tokio::time::timeout(TARGET_DEADLINE, step).await {
                Ok(Ok(outcome)) => {
                    plan::record_target(&mut next, Some(&outcome), lease.metadata.generation, Utc::now());
                    None
                }
                Ok(Err(error)) => Some(error),
                Err(_) => Some(Error::TargetTimeout { target: format!("{namespace}/{}", target.name) }),
            }
        }
        None => {
            plan::record_target(&mut next, None, lease.metadata.generation, Utc::now());
            None
        }
    };
    // A target that failed or hung (an error other than 404/403, or past
    // TARGET_DEADLINE) must not hold up the expiry: the rule changes are still
    // written below, with status.target and TargetReady left as they were, and
    // the reconcile then fails so that error_policy retries the target.

    // 5. One status write with the rule changes, status.target and the
    // conditions, only when it differs. Events follow it, off the critical
    // path; the target's own Events go out even when the write fails, since
    // the target was changed either way (a retry would find nothing to write).
    let written = if next != stored { write_status(&api, &lease, next.clone(), ctx).await.map(Some) } else { Ok(None) };
    match written {
        Ok(written) => {
            if let Some(written) = written {
                lease = written;
                if stored != facts.status {
                    expired_written(ctx, &lease, &facts);
                }
            }
            notes.extend(plan::transition_notes(&stored, &next));
            notes.extend(target_notes);
            publish(ctx, &lease, notes);
        }
        Err(error) => {
            publish(ctx, &lease, target_notes);
            return Err(error);
        }
    }
    if let Some(error) = target_failed {
        return Err(error);
    }
    Ok(Action::requeue(plan::requeue_after(&next, Utc::now())))
}

/// Metrics and logs for the holders dropped by expiry, once their status is written.
fn expired_written(ctx: &Context, lease: &BerthLease, facts: &plan::Facts) {
    let written_at = Utc::now();
    for holder in &facts.expired {
        let lag = (written_at - holder.expires_at).to_std().unwrap_or_default();
        ctx.metrics.expiry_lag(lag);
        tracing::info!(lease = %key(lease), holder = %holder.identity, lag_ms = lag.as_millis(), "expired");
    }
}

/// Step 4 for one phase: reads the target and writes it only when it
/// differs. The Events of a write are pushed to `notes`, for the caller to
/// record after its status write.
pub(crate) async fn act_on_target(
    lease: &BerthLease,
    namespace: &str,
    target: &TargetRef,
    applied: AppliedAction,
    ctx: &Context,
    notes: &mut Vec<Note>,
) -> Result<TargetOutcome> {
    let (kind, setting) = match plan::plan_target(target, &lease.spec, applied) {
        TargetPlan::Apply { kind, setting, .. } => (kind, setting),
        TargetPlan::NoAction { applied } => return Ok(TargetOutcome::NoAction { applied }),
        TargetPlan::Unsupported { message } => return Ok(TargetOutcome::Unsupported { message }),
        TargetPlan::Mismatch { message } => return Ok(TargetOutcome::Mismatch { message }),
    };
    let name = &target.name;
    let shown = format!("{}/{name}", kind.as_str());
    let failed = |failure: Failure, verb: &str| match failure {
        Failure::NotFound => {
            Ok(TargetOutcome::NotFound { message: format!("{shown} does not exist in namespace {namespace}") })
        }
        Failure::Forbidden(detail) => {
            Ok(TargetOutcome::Forbidden { message: format!("the operator may not {verb} {shown}: {detail}") })
        }
        Failure::Other(source) => Err(Error::Target { target: format!("{namespace}/{shown}"), source }),
    };
    let observed = match target::observe(&ctx.client, namespace, kind, name).await {
        Ok(observed) => observed,
        Err(failure) => return failed(failure, "read"),
    };
    let done = |written| TargetOutcome::Applied { kind, name: name.clone(), applied, setting, written };
    if observed.setting == setting {
        return Ok(done(false));
    }
    let resume_warning = match (&observed.cron, observed.setting, setting) {
        (Some(cron), Setting::Suspend(true), Setting::Suspend(false)) => cron.last.and_then(|last| {
            plan::long_suspension_warning(&cron.schedule, cron.starting_deadline_seconds, last, Utc::now())
        }),
        _ => None,
    };
    if let Err(failure) = target::write(&ctx.client, namespace, kind, name, setting).await {
        return failed(failure, "change");
    }
    ctx.metrics.target_action(kind.as_str(), applied_label(applied));
    tracing::info!(lease = %key(lease), target = %shown, setting = %setting.describe(), "target written");
    let message = format!("{shown}: {} ({})", setting.describe(), plan::action_field(applied));
    notes.push(Note::normal(setting.event_reason(), message));
    if let Some(warning) = resume_warning {
        notes.push(Note::warning("CronJobMayNotSchedule", format!("{shown} {warning}")));
    }
    Ok(done(true))
}

fn applied_label(applied: AppliedAction) -> &'static str {
    match applied {
        AppliedAction::Acquire => "acquire",
        AppliedAction::Release => "release",
    }
}

/// The finalizer's work: `releaseAction` on the target. A missing target, an
/// unsupported one or a lease without `releaseAction` lets deletion go on; a
/// forbidden one holds it (so a workload is not left running unseen) until the
/// operator is allowed or the finalizer is removed by hand.
async fn release_on_delete(lease: &BerthLease, namespace: &str, ctx: &Context) -> Result<()> {
    let Some(target) = lease.spec.target.clone() else { return Ok(()) };
    let mut notes = Vec::new();
    let outcome = act_on_target(lease, namespace, &target, AppliedAction::Release, ctx, &mut notes).await;
    let result = match outcome {
        Ok(TargetOutcome::Forbidden { message }) => {
            notes.push(Note::warning("TargetForbidden", message.clone()));
            Err(Error::CleanupBlocked { lease: key(lease), message })
        }
        Ok(
            TargetOutcome::Applied { .. }
            | TargetOutcome::NoAction { .. }
            | TargetOutcome::NotFound { .. }
            | TargetOutcome::Unsupported { .. }
            | TargetOutcome::Mismatch { .. },
        ) => Ok(()),
        Err(error) => Err(error),
    };
    publish(ctx, lease, notes);
    result
}

/// Adds or removes our finalizer with a merge patch guarded by `resourceVersion`.
pub(crate) async fn set_finalizer(api: &Api<BerthLease>, lease: &BerthLease, present: bool) -> Result<BerthLease> {
    let mut finalizers: Vec<String> = lease.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {"resourceVersion": lease.resource_version(), "finalizers": finalizers}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.patch(&lease.name_any(), &params, &Patch::Merge(&patch)).await {
        Ok(patched) => Ok(patched),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict { lease: key(lease) }),
        Err(source) => Err(Error::Finalizer { lease: key(lease), source }),
    }
}

/// Replaces the status, guarded by the `resourceVersion` the lease was read at.
async fn write_status(
    api: &Api<BerthLease>,
    lease: &BerthLease,
    status: BerthLeaseStatus,
    ctx: &Context,
) -> Result<BerthLease> {
    let mut object = lease.clone();
    object.status = Some(status);
    object.metadata.managed_fields = None;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.replace_status(&lease.name_any(), &params, &object).await {
        Ok(written) => {
            ctx.metrics.status_write(false);
            Ok(written)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            ctx.metrics.status_write(true);
            Err(Error::Conflict { lease: key(lease) })
        }
        Err(source) => Err(Error::StatusWrite { lease: key(lease), source }),
    }
}

/// Records `notes` as Events on the lease, in order, in a task of their own:
/// Events never delay a reconcile (and so the next lease's expiry). A failure
/// to record is logged, never fatal; Events still in flight when the process
/// stops are lost, as they would be on a crash.
pub(crate) fn publish(ctx: &Context, lease: &BerthLease, notes: Vec<Note>) {
    if notes.is_empty() {
        return;
    }
    let recorder = ctx.recorder.clone();
    let reference = lease.object_ref(&());
    let lease = key(lease);
    tokio::spawn(async move {
        for note in notes {
            let action = match note.reason.as_str() {
                "Acquired" | "DeclaredHolderRefused" => "Acquire",
                "Released" => "Release",
                "Expired" => "Expire",
                // Member mode (member/claim.rs).
                "Lost" | "Fenced" => "Fence",
                "RenewFailed" => "Renew",
                _ => "ApplyTarget",
            };
            let event = Event {
                type_: if note.warning { EventType::Warning } else { EventType::Normal },
                reason: note.reason.clone(),
                note: Some(note.message.chars().take(1024).collect()),
                action: action.to_owned(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%lease, reason = %note.reason, %error, "recording an Event failed");
            }
        }
    });
}

/// Runs one controller per watched scope (every namespace, or each one named)
/// until `stopped()` completes. Marks `health` ready once every scope can be listed.
///
/// # Caveats
/// Target workloads are watched too, so a hand edit of a target (drift) or a
/// target created after its lease wakes the lease at once. A kind this
/// identity may not list and watch is left unwatched (a failing watch would
/// hold up every trigger of the controller while it backs off): its drift is
/// then corrected by the [`plan::RESYNC`] requeue, which is otherwise only a
/// safety net.
pub async fn run<F>(ctx: Arc<Context>, namespaces: &[String], health: Arc<Health>, stopped: impl Fn() -> F)
where
    F: Future<Output = ()> + Send + Sync + 'static,
{
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    let scopes_for_probe = scopes.clone();
    let mut controllers = Vec::new();
    for scope in scopes {
        let client = ctx.client.clone();
        let (store, writer) = reflector::store();
        let leases = watcher(scoped::<BerthLease>(&client, &scope), watcher::Config::default());
        let mut controller = Controller::for_stream(cached_leases(leases, writer), store.clone());
        for kind in TargetKind::ALL {
            if !may_watch(&client, &scope, kind).await {
                tracing::warn!(
                    kind = kind.as_str(),
                    namespace = scope.as_deref().unwrap_or("<all>"),
                    "may not list and watch this kind: its drift is corrected only on resync"
                );
                continue;
            }
            let wc = watcher::Config::default();
            controller = match kind {
                TargetKind::CronJob => {
                    controller.watches(scoped::<CronJob>(&client, &scope), wc, targeting(store.clone(), kind))
                }
                TargetKind::Job => {
                    controller.watches(scoped::<Job>(&client, &scope), wc, targeting(store.clone(), kind))
                }
                TargetKind::Deployment => {
                    controller.watches(scoped::<Deployment>(&client, &scope), wc, targeting(store.clone(), kind))
                }
                TargetKind::StatefulSet => {
                    controller.watches(scoped::<StatefulSet>(&client, &scope), wc, targeting(store.clone(), kind))
                }
                TargetKind::ReplicaSet => {
                    controller.watches(scoped::<ReplicaSet>(&client, &scope), wc, targeting(store.clone(), kind))
                }
            };
        }
        let controller = controller.graceful_shutdown_on(stopped());
        controllers.push(controller.run(reconcile, error_policy, ctx.clone()).for_each(|result| async move {
            match result {
                Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {}
                Err(error) => tracing::warn!(%error, "controller"),
            }
        }));
    }
    // Ready once every scope can be listed. (Awaiting the controllers' own
    // stores would race their applier for the store's single waker.)
    let probe = ctx.client.clone();
    let ready = tokio::spawn(async move {
        for scope in &scopes_for_probe {
            while let Err(error) = scoped::<BerthLease>(&probe, scope).list(&ListParams::default().limit(1)).await {
                tracing::warn!(%error, "listing BerthLeases failed; not ready");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        health.set_ready();
    });
    futures::future::join_all(controllers).await;
    ready.abort();
}

/// The controller's trigger for one scope: every BerthLease the watch sees,
/// cached in `writer`'s store the way `Controller::new` would, but without
/// `metadata.managedFields`.
///
/// # Caveats
/// managedFields were about half of each cached lease, and nothing in the
/// operator reads them. Status writes send none (see [`write_status`]), and
/// kube-apiserver keeps the stored ones when a write omits them (for the
/// `/status` subresource it always keeps them), so ownership on the server is
/// unaffected; `tests/operator.rs` checks that other managers survive.
pub fn cached_leases<S>(events: S, writer: Writer<BerthLease>) -> impl Stream<Item = Result<BerthLease, watcher::Error>>
where
    S: Stream<Item = watcher::Result<watcher::Event<BerthLease>>> + Send + 'static,
{
    events.modify(|lease| lease.metadata.managed_fields = None).reflect(writer).applied_objects()
}

/// Asks kube-apiserver (SelfSubjectAccessReview) whether this identity may
/// list and watch `kind` in `scope`. An unanswered question counts as yes.
async fn may_watch(client: &Client, scope: &Option<String>, kind: TargetKind) -> bool {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for verb in ["list", "watch"] {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(kind.group().to_owned()),
                    resource: Some(kind.plural().to_owned()),
                    verb: Some(verb.to_owned()),
                    namespace: scope.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => {
                if !answer.status.is_some_and(|s| s.allowed) {
                    return false;
                }
            }
            Err(error) => tracing::warn!(%error, "SelfSubjectAccessReview failed; watching anyway"),
        }
    }
    true
}

fn scoped<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Maps a changed workload to the leases in its namespace that target it.
fn targeting<K>(store: Store<BerthLease>, kind: TargetKind) -> impl Fn(K) -> Vec<ObjectRef<BerthLease>> + Send + Sync
where
    K: Resource<DynamicType = ()>,
{
    move |workload| {
        let (namespace, name) = (workload.meta().namespace.clone(), workload.meta().name.clone());
        store
            .state()
            .iter()
            .filter(|lease| {
                lease.metadata.namespace == namespace
                    && lease
                        .spec
                        .target
                        .as_ref()
                        .is_some_and(|t| TargetKind::of(t) == Some(kind) && Some(&t.name) == name.as_ref())
            })
            .map(|lease| ObjectRef::from_obj(&**lease))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use berth_api::BerthLeaseSpec;
    use futures::executor::block_on;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::runtime::watcher::Event;

    use super::*;

    fn lease(name: &str, version: &str) -> BerthLease {
        let mut lease = BerthLease::new(name, BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.metadata.resource_version = Some(version.into());
        lease.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("berth-apiserver".into()), ..Default::default() }]);
        lease
    }

    #[test]
    fn cached_and_triggered_leases_carry_no_managed_fields() {
        let (store, writer) = reflector::store();
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(lease("a", "1"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(lease("b", "2"))),
            Ok(Event::Apply(lease("a", "3"))),
        ]);
        let triggered: Vec<BerthLease> =
            block_on(cached_leases(events, writer).collect::<Vec<_>>()).into_iter().map(Result::unwrap).collect();
        let names: Vec<_> = triggered.iter().map(|l| (l.name_any(), l.resource_version().unwrap())).collect();
        assert_eq!(names, [("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".to_owned())]);
        assert!(triggered.iter().all(|l| l.metadata.managed_fields.is_none()));
        let cached = store.state();
        assert_eq!(cached.len(), 2);
        assert!(cached.iter().all(|l| l.metadata.managed_fields.is_none()));
        let a = store.get(&ObjectRef::new("a").within("ns")).unwrap();
        assert_eq!(a.resource_version().as_deref(), Some("3"));
    }
}
