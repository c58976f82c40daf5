//! Acquire, renew and release as conditional writes of BerthLease status.
//!
//! Each request reads the lease (from the cache first), asks
//! [`berth_api::rules::decide`] what to do, and writes the status it returns
//! with `replace_status` carrying the read `resourceVersion`, under field
//! manager `berth-apiserver`. A 409 means someone wrote in between: reread
//! with a direct GET, decide again, with bounded retries and jitter.
//!
//! Writes pass the [`WriteQueue`]: at most [`WriteLimit::max_concurrent`]
//! requests write to kube-apiserver at once and at most
//! [`WriteLimit::max_queued`] wait, renews and releases before acquires. A
//! request that finds the queue full fails at once with
//! [`Error::Overloaded`] (503 with `Retry-After`) instead of waiting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::rules::{self, Outcome, Refusal};
use berth_api::{BerthLease, BerthLeaseSpec, BerthLeaseStatus, Semantics};
use chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::Tenant;
use crate::cache::LeaseCache;
use crate::metrics::Metrics;
use crate::write_queue::{Priority, WriteLimit, WriteQueue, WriteSlot, retry_after_seconds};

/// The one field manager of this binary.
pub const FIELD_MANAGER: &str = "berth-apiserver";
pub use berth_api::crd::{CLUSTER_SET_LABEL, TENANT_LABEL};
/// Tries of one request before it answers "contended".
const MAX_ATTEMPTS: u32 = 8;
/// Longest random pause of a waiting acquire after its lease changed.
const WAKE_JITTER_MS: u64 = 20;
/// Shortest pause between two warnings that requests are being shed.
const SHED_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Why a lease operation failed: the boundary with kube-apiserver and the
/// write queue, kept apart from [`ApiError`](crate::error::ApiError) so that
/// the retry and shedding logic here matches on causes, not on HTTP answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease carries another tenant's label.
    #[error("lease belongs to another tenant")]
    ForeignLease,
    /// An acquire would create the lease in a namespace that does not exist.
    #[error("namespace not found")]
    NamespaceNotFound,
    /// Every attempt met a conflicting write.
    #[error("gave up after {MAX_ATTEMPTS} conflicting writes")]
    Contended,
    /// The write queue was full: the request was shed, nothing was written.
    /// The caller is asked to retry after `retry_after_seconds`.
    #[error("the write queue is full")]
    Overloaded { retry_after_seconds: u32 },
    #[error("kube-apiserver {verb} failed: {source}")]
    Kube {
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    /// `decide` answered something that does not fit the request.
    #[error("unexpected lease outcome {0:?}")]
    UnexpectedOutcome(Box<Outcome>),
}

impl Error {
    /// Whether kube-apiserver could not be reached or could not answer (no
    /// connection, a timeout, a 5xx or 429): nothing was decided, so the
    /// caller may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                kube::Error::Api(status) => status.code == 429 || status.code >= 500,
                _ => false,
            },
            _ => false,
        }
    }
}

/// What an acquire that creates the lease puts in its spec.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub ttl_seconds: i32,
    pub semantics: Option<Semantics>,
    pub max_holders: Option<i32>,
}

/// One acquire, renew or release against one lease.
pub struct Write<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub tenant: &'a Tenant,
    pub request: rules::Request<'a>,
    /// `Some` for acquire: the lease is created when absent.
    pub create: Option<CreateSpec>,
}

/// Whether `tenant` may see `lease`: a cluster-set label decides when
/// present (the tenant is of that set); else a tenant label (it is theirs);
/// a lease with neither (made with kubectl or GitOps) is every tenant's.
pub fn visible_to(lease: &BerthLease, tenant: &Tenant) -> bool {
    let labels = lease.labels();
    match (labels.get(CLUSTER_SET_LABEL), labels.get(TENANT_LABEL)) {
        (Some(set), _) => tenant.cluster_set.as_ref() == Some(set),
        (None, Some(owner)) => *owner == tenant.name,
        (None, None) => true,
    }
}

/// The fixed label of an outcome, for logs and metrics.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Granted(_) => "granted",
        Outcome::Renewed(_) => "renewed",
        Outcome::NotAcquired { refusal, .. } => match refusal {
            Refusal::HeldByOther => "held_by_other",
            Refusal::Full => "full",
            Refusal::LockDelay => "lock_delay",
            Refusal::Lost => "lost",
            Refusal::TokensExhausted => "tokens_exhausted",
        },
        Outcome::Released => "released",
        Outcome::AlreadyReleased => "already_released",
        Outcome::ReleaseConflict => "release_conflict",
        Outcome::Expired(_) => "expired",
        Outcome::NothingExpired => "nothing_expired",
    }
}

/// The operation of a request, for logs and metrics.
pub fn operation_label(request: &rules::Request) -> &'static str {
    match request {
        rules::Request::Acquire { .. } => "acquire",
        rules::Request::Renew { .. } => "renew",
        rules::Request::Release { .. } => "release",
        rules::Request::Expire => "expire",
    }
}

pub struct Leases {
    client: Client,
    cache: Arc<LeaseCache>,
    metrics: Arc<Metrics>,
    /// The slots to write to kube-apiserver, and the queue for them.
    queue: WriteQueue,
    /// Requests shed since the last warning, and when that was.
    shed_unreported: AtomicU64,
    last_shed_warning: Mutex<Option<Instant>>,
}

impl Leases {
    pub fn new(client: Client, cache: Arc<LeaseCache>, metrics: Arc<Metrics>, limit: WriteLimit) -> Self {
        Self {
            client,
            cache,
            queue: WriteQueue::new(limit, metrics.clone()),
            metrics,
            shed_unreported: AtomicU64::new(0),
            last_shed_warning: Mutex::new(None),
        }
    }

    /// Applies one request with conditional writes.
    ///
    /// # Guarantees
    /// - Every grant, renew or release is one `replace_status` guarded by the
    ///   resourceVersion that `decide` saw; nothing is granted on a stale read.
    /// - An answer that writes nothing but would tell the caller it lost its
    ///   lease (renew refused, release of an absent entry or a conflict) is
    ///   confirmed against a direct GET when it came from the cache.
    ///
    /// - A request takes a write slot before its first write and keeps it to
    ///   the end, so it is never shed half-way (after a create, before the
    ///   grant). Answers that need no write take no slot. Renews and releases
    ///   queue as [`Priority::Holding`], grants and creates as
    ///   [`Priority::Acquiring`].
    /// - Once it has its slot, the request decides again at the current time,
    ///   on the newest cached copy: a wait in the queue does not age the
    ///   decision or the `expiresAt` it writes.
    ///
    /// # Errors
    /// [`Error::ForeignLease`] for another tenant's lease, [`Error::Contended`]
    /// after [`MAX_ATTEMPTS`] conflicts, [`Error::Overloaded`] when the write
    /// queue was full (nothing was written), and kube-apiserver failures.
    pub async fn write(&self, w: &Write<'_>) -> Result<Outcome, Error> {
        let api: Api<BerthLease> = Api::namespaced(self.client.clone(), w.namespace);
        let mut current = self.cache.get(w.namespace, w.name);
        let mut fresh = false;
        let mut conflicts = 0;
        let mut slot = None;
        // The generation this call created, if it did.
        let mut created = None;
        loop {
            let lease = match (current.take(), &w.create) {
                (Some(lease), _) => lease,
                (None, Some(spec)) => match self.create_in_slot(&mut slot, &api, w, spec).await? {
                    Some(lease) => {
                        created = lease.metadata.generation;
                        Arc::new(lease)
                    }
                    None => {
                        self.back_off(&mut conflicts).await?;
                        current = self.read(&api, w.name).await?;
                        fresh = true;
                        continue;
                    }
                },
                (None, None) if !fresh => {
                    current = self.read(&api, w.name).await?;
                    fresh = true;
                    continue;
                }
                (None, None) => return Ok(absent(&w.request)),
            };
            if !visible_to(&lease, w.tenant) {
                return Err(Error::ForeignLease);
            }
            let status = lease.status.clone().unwrap_or_default();
            let decision = rules::decide(&lease.spec, &status, &w.request, Utc::now());
            let Some(mut status) = decision.status else {
                if !fresh && needs_confirmation(&decision.outcome) {
                    current = self.read(&api, w.name).await?;
                    fresh = true;
                    continue;
                }
                return Ok(decision.outcome);
            };
            if slot.is_none() {
                let priority = write_priority(&decision.outcome);
                let tenure_end = lease.status.as_ref().and_then(|s| rules::tenure_end(s, &w.request, Utc::now()));
                slot = Some(self.write_slot(&w.request, priority, tenure_end).await?);
                current = if fresh { Some(lease) } else { self.cache.get(w.namespace, w.name).or(Some(lease)) };
                continue;
            }
            if created.is_some() && status.observed_generation.is_none() {
                // This grant is the declared holder's acquire for the generation
                // just created: record it, so the operator does not repeat it
                // after the holder has perhaps already released.
                status.observed_generation = created;
            }
            if self.replace_status(&api, &lease, status).await? {
                return Ok(decision.outcome);
            }
            self.back_off(&mut conflicts).await?;
            current = self.read(&api, w.name).await?;
            fresh = true;
        }
    }

    /// Acquire that blocks until granted, `wait` has passed, or shutdown.
    /// It wakes on cache events and at the next local expiry or lock-delay
    /// end; it never polls kube-apiserver.
    ///
    /// # Errors
    /// As [`Leases::write`].
    pub async fn acquire_waiting(
        &self,
        w: &Write<'_>,
        wait: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, Error> {
        let deadline = Instant::now() + wait;
        let mut changes = self.cache.subscribe();
        let version = || self.cache.get(w.namespace, w.name).and_then(|l| l.metadata.resource_version.clone());
        let mut waiting = None;
        loop {
            changes.borrow_and_update();
            let outcome = self.write(w).await?;
            let refused = matches!(outcome, Outcome::NotAcquired { .. });
            if !refused || Instant::now() >= deadline {
                return Ok(outcome);
            }
            waiting.get_or_insert_with(|| self.metrics.waiting());
            let seen = version();
            let wake = self.next_change(w.namespace, w.name).map_or(deadline, |t| t.min(deadline));
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return Ok(outcome) },
                    _ = tokio::time::sleep_until(wake) => break,
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(outcome),
                }
                // Events of other leases wake every waiter: try again only
                // when this lease changed.
                if version() != seen {
                    // Every waiter of this lease woke at once: spread them out,
                    // so the first grant reaches the others' cache before they
                    // write, instead of all but one meeting a conflict.
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=WAKE_JITTER_MS))).await;
                    break;
                }
            }
        }
    }

    /// When the cached lease may next become acquirable without any write
    /// ([`rules::next_change`]), as a tokio deadline.
    fn next_change(&self, namespace: &str, name: &str) -> Option<Instant> {
        let lease = self.cache.get(namespace, name)?;
        let now = Utc::now();
        let at = rules::next_change(&lease.spec, lease.status.as_ref()?, now)?;
        // `decide` treats an entry as live while now < expiresAt: wake just after.
        Some(Instant::now() + (at - now).to_std().unwrap_or_default() + Duration::from_millis(1))
    }

    /// A write slot, or [`Error::Overloaded`] when the queue is full, asking
    /// the caller back at a time drawn against `tenure_end`, the end of its
    /// live tenure ([`retry_after_seconds`]).
    async fn write_slot(
        &self,
        request: &rules::Request<'_>,
        priority: Priority,
        tenure_end: Option<DateTime<Utc>>,
    ) -> Result<WriteSlot<'_>, Error> {
        let asked = Instant::now();
        match self.queue.slot(priority).await {
            Ok(slot) => {
                self.metrics.write_queue_wait.observe(asked.elapsed().as_secs_f64());
                Ok(slot)
            }
            Err(_) => {
                self.shed(operation_label(request), priority);
                let left = tenure_end.and_then(|end| (end - Utc::now()).to_std().ok());
                Err(Error::Overloaded { retry_after_seconds: retry_after_seconds(priority, left, fastrand::f64()) })
            }
        }
    }

    /// Counts a shed request, and warns at most every [`SHED_WARN_INTERVAL`].
    fn shed(&self, operation: &'static str, priority: Priority) {
        self.metrics.shed(operation);
        self.shed_unreported.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_shed_warning.lock().expect("shed warning lock");
        if last.is_some_and(|at| at.elapsed() < SHED_WARN_INTERVAL) {
            tracing::debug!(operation, priority = priority.label(), "write queue full: answered 503");
            return;
        }
        *last = Some(Instant::now());
        let shed = self.shed_unreported.swap(0, Ordering::Relaxed);
        let limit = self.queue.limit();
        tracing::warn!(
            shed,
            max_concurrent_writes = limit.max_concurrent,
            max_queued_writes = limit.max_queued,
            "overloaded: requests found the write queue full and were answered 503"
        );
    }

    /// [`Leases::create`] after taking a write slot, unless `slot` holds one already.
    async fn create_in_slot<'s>(
        &'s self,
        slot: &mut Option<WriteSlot<'s>>,
        api: &Api<BerthLease>,
        w: &Write<'_>,
        spec: &CreateSpec,
    ) -> Result<Option<BerthLease>, Error> {
        if slot.is_none() {
            *slot = Some(self.write_slot(&w.request, Priority::Acquiring, None).await?);
        }
        self.create(api, w, spec).await
    }

    async fn read(&self, api: &Api<BerthLease>, name: &str) -> Result<Option<Arc<BerthLease>>, Error> {
        let lease = api.get_opt(name).await.map_err(|source| Error::Kube { verb: "get", source })?;
        Ok(lease.map(Arc::new))
    }

    /// Creates the lease; `None` when it already exists (a conflict).
    async fn create(
        &self,
        api: &Api<BerthLease>,
        w: &Write<'_>,
        spec: &CreateSpec,
    ) -> Result<Option<BerthLease>, Error> {
        let holder = match w.request {
            rules::Request::Acquire { holder, .. } => Some(holder.to_owned()),
            _ => None,
        };
        let mut lease = BerthLease::new(
            w.name,
            BerthLeaseSpec {
                holder_identity: holder,
                semantics: spec.semantics.unwrap_or_default(),
                max_holders: spec.max_holders,
                ..BerthLeaseSpec::created_with_ttl(spec.ttl_seconds)
            },
        );
        let owner = match &w.tenant.cluster_set {
            Some(set) => (CLUSTER_SET_LABEL.to_owned(), set.clone()),
            None => (TENANT_LABEL.to_owned(), w.tenant.name.clone()),
        };
        lease.metadata.labels = Some(BTreeMap::from([owner]));
        match api.create(&post_params(), &lease).await {
            Ok(created) => {
                self.metrics.write("create", "ok");
                let created = self.clear_managed_fields(api, created).await;
                self.cache.record_write(None, created.clone());
                Ok(Some(created))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.metrics.write("create", "conflict");
                Ok(None)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.metrics.write("create", "error");
                Err(Error::NamespaceNotFound)
            }
            Err(source) => {
                self.metrics.write("create", "error");
                Err(Error::Kube { verb: "create", source })
            }
        }
    }

    /// Clears the managedFields of a lease this apiserver has just created,
    /// and returns it as stored; on failure, as created (only the cost of
    /// later writes is lost).
    ///
    /// Every write of a status replaces it whole under a resourceVersion, so
    /// field ownership records nothing that anyone reads; and kube-apiserver
    /// does not track it on updates of an object whose managedFields are
    /// empty (it does again after a server-side apply). Leases that users
    /// create (kubectl, GitOps) keep theirs.
    async fn clear_managed_fields(&self, api: &Api<BerthLease>, created: BerthLease) -> BerthLease {
        // A list of one empty entry is how kube-apiserver is told to clear them.
        let clear = serde_json::json!({"metadata": {"managedFields": [{}]}});
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        match api.patch(&created.name_any(), &params, &Patch::Merge(&clear)).await {
            Ok(cleared) => {
                self.metrics.write("clear_managed_fields", "ok");
                cleared
            }
            Err(error) => {
                self.metrics.write("clear_managed_fields", "error");
                tracing::warn!(lease = %created.name_any(), %error, "could not clear the managedFields of a created lease");
                created
            }
        }
    }

    /// Writes `status` guarded by the lease's resourceVersion; `false` on 409.
    async fn replace_status(
        &self,
        api: &Api<BerthLease>,
        lease: &BerthLease,
        status: BerthLeaseStatus,
    ) -> Result<bool, Error> {
        let mut object = lease.clone();
        object.metadata.managed_fields = None;
        object.status = Some(status);
        match api.replace_status(&lease.name_any(), &post_params(), &object).await {
            Ok(written) => {
                self.metrics.write("replace_status", "ok");
                self.cache.record_write(lease.metadata.resource_version.clone(), written);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.metrics.write("replace_status", "conflict");
                Ok(false)
            }
            Err(source) => {
                self.metrics.write("replace_status", "error");
                Err(Error::Kube { verb: "replace_status", source })
            }
        }
    }

    /// Sleeps a random, growing while after a conflict, or gives up.
    async fn back_off(&self, conflicts: &mut u32) -> Result<(), Error> {
        *conflicts += 1;
        if *conflicts >= MAX_ATTEMPTS {
            return Err(Error::Contended);
        }
        let ceiling_ms = (5u64 << *conflicts).min(200);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=ceiling_ms))).await;
        Ok(())
    }
}

fn post_params() -> PostParams {
    PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) }
}

/// The queue class of a write that `decide` asked for: keeping or ending a
/// live tenure comes before starting one.
/// Answers that write nothing never ask (they are listed for exhaustiveness).
fn write_priority(outcome: &Outcome) -> Priority {
    match outcome {
        Outcome::Granted(_) => Priority::Acquiring,
        Outcome::Renewed(_) | Outcome::Released | Outcome::Expired(_) => Priority::Holding,
        Outcome::NotAcquired { .. } | Outcome::AlreadyReleased | Outcome::ReleaseConflict | Outcome::NothingExpired => {
            Priority::Holding
        }
    }
}

/// Answers that a stale cache could get wrong to the caller's harm.
fn needs_confirmation(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::NotAcquired { refusal: Refusal::Lost, .. } | Outcome::AlreadyReleased | Outcome::ReleaseConflict
    )
}

/// The answer for a lease that does not exist (renew and release only).
fn absent(request: &rules::Request) -> Outcome {
    match request {
        rules::Request::Release { .. } => Outcome::AlreadyReleased,
        _ => Outcome::NotAcquired { refusal: Refusal::Lost, current: None },
    }
}
