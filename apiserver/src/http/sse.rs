//! Server-Sent Events: the watch of one lease, and the collection watch of a
//! tenant's leases (`GET …/leases?watch=1`, what to tell is decided by
//! [`crate::collection_watch`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::BerthLease;
use berth_api::wire::{INITIAL_EVENTS_END, LeaseView, WatchEventKind};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use tokio::sync::watch;

use crate::auth::Tenant;
use crate::collection_watch::{Change, Told};
use crate::error::ApiError;
use crate::leases::visible_to;

use super::App;
use super::extract::LeasePath;

/// SSE keep-alive period (docs/api.md: a comment line every 15 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn watch_lease(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.lease_reader(&headers, &path).await?;
    // Subscribe before the first read, so no change falls in between.
    let changes = app.cache.subscribe();
    let lease = app.visible_lease(&tenant, &path.namespace, &path.name)?;
    let keep_alive = KeepAlive::new().interval(app.keep_alive);
    let stream = lease_events(app, path, lease, changes);
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// The current state, then one event per new resourceVersion. Ends when the
/// lease is deleted or the server shuts down.
fn lease_events(
    app: Arc<App>,
    path: LeasePath,
    first: Arc<BerthLease>,
    changes: watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Watch {
        app: Arc<App>,
        path: LeasePath,
        changes: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        last: Option<String>,
    }
    let event = |lease: &BerthLease| {
        Event::default().event("lease").json_data(LeaseView::from_lease(lease)).expect("the lease view serializes")
    };
    let initial = event(&first);
    let shutdown = app.shutdown.clone();
    let state = Watch { app, path, changes, shutdown, last: first.resource_version() };
    let rest = futures::stream::unfold(state, move |mut w| async move {
        loop {
            tokio::select! {
                changed = w.changes.changed() => changed.ok()?,
                _ = w.shutdown.wait_for(|stop| *stop) => return None,
            }
            let lease = w.app.cache.get(&w.path.namespace, &w.path.name)?;
            if lease.resource_version() != w.last {
                w.last = lease.resource_version();
                return Some((Ok(event(&lease)), w));
            }
        }
    });
    futures::stream::once(async move { Ok(initial) }).chain(rest)
}

/// The SSE response of a collection watch for `tenant`: every namespace it
/// may use, or only `namespace`. The caller has checked the key, the
/// namespace and that this apiserver serves it.
pub(super) fn watch_collection(app: Arc<App>, tenant: Tenant, namespace: Option<String>) -> Response {
    // Subscribe before the first read, so no change falls in between.
    let changes = app.cache.subscribe();
    let keep_alive = KeepAlive::new().interval(app.keep_alive);
    Sse::new(collection_events(app, tenant, namespace, changes)).keep_alive(keep_alive).into_response()
}

/// One `added` per readable lease, the bookmark, then the changes, until
/// the server shuts down.
fn collection_events(
    app: Arc<App>,
    tenant: Tenant,
    namespace: Option<String>,
    changes: watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Watcher {
        app: Arc<App>,
        tenant: Tenant,
        namespace: Option<String>,
        changes: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
        told: Told,
        ready: VecDeque<Event>,
    }
    impl Watcher {
        fn readable(&self) -> Vec<Arc<BerthLease>> {
            self.app.cache.list(|l| {
                let Some(ns) = l.metadata.namespace.as_deref() else { return false };
                self.namespace.as_deref().is_none_or(|only| only == ns)
                    && self.tenant.may_use_namespace(ns)
                    && visible_to(l, &self.tenant)
            })
        }
        fn queue(&mut self) {
            let current = self.readable();
            self.ready.extend(self.told.update(current).into_iter().map(|c| sse_event(&c)));
        }
    }
    let shutdown = app.shutdown.clone();
    let mut first =
        Watcher { app, tenant, namespace, changes, shutdown, told: Told::default(), ready: VecDeque::new() };
    first.changes.borrow_and_update();
    first.queue();
    first.ready.push_back(Event::default().event(WatchEventKind::Bookmark.as_str()).data(INITIAL_EVENTS_END));
    futures::stream::unfold(first, |mut w| async move {
        loop {
            if let Some(event) = w.ready.pop_front() {
                return Some((Ok(event), w));
            }
            tokio::select! {
                changed = w.changes.changed() => changed.ok()?,
                _ = w.shutdown.wait_for(|stop| *stop) => return None,
            }
            w.changes.borrow_and_update();
            w.queue();
        }
    })
}

fn sse_event(change: &Change) -> Event {
    Event::default().event(change.kind.as_str()).json_data(&change.view).expect("the lease view serializes")
}
