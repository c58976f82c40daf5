//! The state every handler shares, and the checks that need it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use berth_api::BerthLease;
use tokio::sync::watch;

use crate::auth::{Authenticator, Tenant};
use crate::cache::LeaseCache;
use crate::error::ApiError;
use crate::leases::{Leases, visible_to};
use crate::metrics::Metrics;
use crate::warmup::CreatePath;
use crate::write_queue::WriteLimit;

use super::extract::LeasePath;
use super::sse::KEEP_ALIVE;

/// Everything the handlers share.
pub struct App {
    pub leases: Leases,
    pub cache: Arc<LeaseCache>,
    pub authenticator: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    /// Whether kube-apiserver creates BerthLeases without its post-CRD delay ([`crate::warmup`]).
    pub create_path: Arc<CreatePath>,
    /// Turns `true` when shutdown starts: readiness fails, waits and watches end.
    pub shutdown: watch::Receiver<bool>,
    /// Period of the SSE keep-alive comment; [`KEEP_ALIVE`] unless a test shortens it.
    pub keep_alive: Duration,
}

impl App {
    /// Starts the informer cache for `namespaces` (empty: all) and the
    /// create-path warm-up (in the first of them, else `default`) on the
    /// current runtime, and wires the handlers' state; `write_limit` bounds
    /// the concurrent writes to kube-apiserver.
    ///
    /// # Caveats
    /// Keep the sender of `shutdown` alive: once it is dropped, waiting
    /// acquires and SSE watches end at once, as on shutdown.
    pub fn start(
        client: kube::Client,
        namespaces: &[String],
        authenticator: Arc<dyn Authenticator>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        write_limit: WriteLimit,
    ) -> Arc<Self> {
        let cache = LeaseCache::start(client.clone(), namespaces, metrics.clone());
        let create_path = Arc::new(CreatePath::default());
        let probe_namespace = namespaces.first().map_or("default", String::as_str).to_owned();
        create_path.warm_up(client.clone(), probe_namespace, shutdown.clone());
        let leases = Leases::new(client, cache.clone(), metrics.clone(), write_limit);
        Arc::new(Self { leases, cache, authenticator, metrics, create_path, shutdown, keep_alive: KEEP_ALIVE })
    }

    /// Step 1 of the checks in docs/api.md: the chained authenticators (keys, JWT,
    /// TokenReview) decide; one that could not answer makes it a 503.
    pub(super) async fn authenticate(&self, headers: &HeaderMap) -> Result<Tenant, ApiError> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::MissingAuth)?;
        let tenant = self.authenticator.authenticate(key).await?.ok_or(ApiError::UnknownKey)?;
        tracing::Span::current().record("tenant", tenant.name.as_str());
        Ok(tenant)
    }

    /// Step 4: the namespace, then the holder.
    pub(super) fn authorize(&self, tenant: &Tenant, namespace: &str, holder: Option<&str>) -> Result<(), ApiError> {
        if !tenant.may_use_namespace(namespace) {
            return Err(ApiError::NamespaceForbidden);
        }
        if holder.is_some_and(|h| !tenant.may_act_as(h)) {
            return Err(ApiError::HolderForbidden);
        }
        Ok(())
    }

    /// Steps 1 to 5 of a read of one lease: the caller, its namespace, the names.
    pub(super) async fn lease_reader(&self, headers: &HeaderMap, path: &LeasePath) -> Result<Tenant, ApiError> {
        let tenant = self.authenticate(headers).await?;
        self.authorize(&tenant, &path.namespace, None)?;
        path.check(self)?;
        Ok(tenant)
    }

    /// After the names check: whether this apiserver watches the namespace.
    pub(super) fn served(&self, namespace: &str) -> Result<(), ApiError> {
        if self.cache.serves(namespace) { Ok(()) } else { Err(ApiError::NamespaceNotServed) }
    }

    /// The lease as `tenant` may see it: absent and foreign both answer 404.
    pub(super) fn visible_lease(
        &self,
        tenant: &Tenant,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<BerthLease>, ApiError> {
        self.synced()?;
        self.cache.get(namespace, name).filter(|l| visible_to(l, tenant)).ok_or(ApiError::LeaseNotFound)
    }

    /// Reads are served from the cache, so none is answered before its first
    /// sync: a restarted apiserver would otherwise call an existing lease
    /// absent (404, which ends a client's watch) or list none. Writes read
    /// kube-apiserver directly when the cache has no copy, and do not wait.
    pub(super) fn synced(&self) -> Result<(), ApiError> {
        if self.cache.has_synced() { Ok(()) } else { Err(ApiError::Syncing) }
    }

    pub(super) fn ready(&self) -> bool {
        self.cache.is_ready() && self.create_path.is_warm() && !*self.shutdown.borrow()
    }
}
