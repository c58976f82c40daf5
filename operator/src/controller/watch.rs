//! The watches that drive the controller: one controller per watched scope,
//! triggered by its BerthLeases and by the target workloads they name.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use berth_api::BerthLease;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, PartialObjectMeta, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Error as ControllerError};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::http::Health;
use crate::plan::TargetKind;

use super::{Context, error_policy, reconcile};

/// Reconciles in flight at once, per scope. Enough that the writes of a burst
/// of expiries (200 leases expiring together in `berth-bench`) all overlap,
/// and a bound on a cold start over every lease of the cluster: unbounded,
/// 10,000 leases listed at once were 10,000 reconciles in flight (about 9 MiB
/// of futures and copies, and a connection each), a high-water mark the
/// allocator keeps.
const CONCURRENT_RECONCILES: u16 = 256;

/// Runs one controller per watched scope (every namespace, or each one named)
/// until `stopping` turns true. Marks `health` ready once every scope can be listed.
///
/// # Caveats
/// Target workloads are watched too, so a hand edit of a target (drift) or a
/// target created after its lease wakes the lease at once. A kind this
/// identity may not list and watch is left unwatched (a failing watch would
/// hold up every trigger of the controller while it backs off): its drift is
/// then corrected by the [`plan::RESYNC`] requeue, which is otherwise only a
/// safety net.
pub async fn run(ctx: Arc<Context>, namespaces: &[String], health: Arc<Health>, stopping: watch::Receiver<bool>) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    let scopes_for_probe = scopes.clone();
    let mut controllers = Vec::new();
    for scope in scopes {
        let client = ctx.client.clone();
        let (store, writer) = reflector::store();
        // Every version passes the grant journal first: a reconcile sees only the newest.
        let journal = ctx.clone();
        let leases = watcher(scoped::<BerthLease>(&client, &scope), watcher::Config::default()).inspect(move |event| {
            if let Ok(event) = event {
                journal.grants.observe(event)
            }
        });
        let mut controller = Controller::for_stream(cached_leases(leases, writer), store.clone())
            .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES));
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
            let (store, scope) = (store.clone(), &scope);
            controller = match kind {
                TargetKind::CronJob => {
                    controller.watches_stream(names::<CronJob>(&client, scope, wc, &ctx, kind), targeting(store, kind))
                }
                TargetKind::Job => {
                    controller.watches_stream(names::<Job>(&client, scope, wc, &ctx, kind), targeting(store, kind))
                }
                TargetKind::Deployment => controller
                    .watches_stream(names::<Deployment>(&client, scope, wc, &ctx, kind), targeting(store, kind)),
                TargetKind::StatefulSet => controller
                    .watches_stream(names::<StatefulSet>(&client, scope, wc, &ctx, kind), targeting(store, kind)),
                TargetKind::ReplicaSet => controller
                    .watches_stream(names::<ReplicaSet>(&client, scope, wc, &ctx, kind), targeting(store, kind)),
            };
        }
        let controller = controller.graceful_shutdown_on(crate::stopped(stopping.clone()));
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
/// the metadata nothing in the operator reads (see [`compact`]).
pub fn cached_leases<S>(events: S, writer: Writer<BerthLease>) -> impl Stream<Item = Result<BerthLease, watcher::Error>>
where
    S: Stream<Item = watcher::Result<watcher::Event<BerthLease>>> + Send + 'static,
{
    events.modify(compact).reflect(writer).applied_objects()
}

/// Drops what the operator never reads from a cached lease: `managedFields`
/// (about half of each object), labels, annotations and owner references (a
/// label map alone costs a B-tree node of about 0.5 KiB per lease).
///
/// # Caveats
/// Safe for the operator's writes: a status write replaces only the status
/// (kube-apiserver keeps the stored metadata, managedFields included, for
/// the `/status` subresource; `tests/operator.rs` checks that other managers
/// survive), and the finalizer patch names only the finalizers.
fn compact(lease: &mut BerthLease) {
    let meta = &mut lease.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = None;
    meta.owner_references = None;
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

/// The workloads of one kind in `scope`, as metadata only: the trigger needs
/// their names, and a cluster-wide list of full Deployments or CronJobs would
/// cost the operator memory for nothing. Their generations keep the
/// context's [`super::TargetMemory`] honest.
fn names<K>(
    client: &Client,
    scope: &Option<String>,
    config: watcher::Config,
    ctx: &Arc<Context>,
    kind: TargetKind,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let ctx = ctx.clone();
    watcher(scoped::<PartialObjectMeta<K>>(client, scope), config)
        .inspect(move |event| {
            if let Ok(event) = event {
                ctx.targets.observe(kind, event);
            }
        })
        .touched_objects()
}

/// Maps a changed workload to the leases in its namespace that target it.
fn targeting<K>(
    store: Store<BerthLease>,
    kind: TargetKind,
) -> impl Fn(PartialObjectMeta<K>) -> Vec<ObjectRef<BerthLease>> + Send + Sync
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
    use kube::ResourceExt;
    use kube::runtime::watcher::Event;

    use super::*;

    fn lease(name: &str, version: &str) -> BerthLease {
        let mut lease = BerthLease::new(name, BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.metadata.resource_version = Some(version.into());
        lease.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("berth-apiserver".into()), ..Default::default() }]);
        lease.metadata.labels = Some([("berth.skaphos.io/tenant".to_owned(), "t".to_owned())].into());
        lease.metadata.annotations = Some([("note".to_owned(), "kept by kube-apiserver".to_owned())].into());
        lease
    }

    #[test]
    fn cached_and_triggered_leases_carry_no_managed_fields_labels_or_annotations() {
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
        let stripped = |l: &BerthLease| {
            l.metadata.managed_fields.is_none() && l.metadata.labels.is_none() && l.metadata.annotations.is_none()
        };
        assert!(triggered.iter().all(stripped));
        let cached = store.state();
        assert_eq!(cached.len(), 2);
        assert!(cached.iter().all(|l| stripped(l)));
        let a = store.get(&ObjectRef::new("a").within("ns")).unwrap();
        assert_eq!(a.resource_version().as_deref(), Some("3"));
    }
}
