//! The collection watch, `GET /v1alpha1/leases?watch=1` and
//! `GET /v1alpha1/namespaces/{ns}/leases?watch=1`: Server-Sent Events of
//! `added`, `modified` and `deleted` lease views in the Kubernetes style.
//!
//! A watcher starts with one `added` per lease it may read, then one
//! `bookmark` ([`INITIAL_EVENTS_END`]), then the changes. Changes are found
//! by comparing what the watcher was last told with the cache whenever the
//! cache changes ([`Told::update`]): a burst of changes costs one pass over
//! the tenant's leases, and a watcher never sees a lease it may not read,
//! including one whose namespace was taken from its tenant while it watched
//! (that lease is `deleted` for it).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::BerthLease;
use berth_api::wire::{INITIAL_EVENTS_END, LeaseView, WatchEventKind};
use futures::Stream;
use tokio::sync::watch;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::App;
use crate::leases::visible_to;

/// Whether a list request asks for a watch: its `watch` query parameter is
/// `1` or `true` (`0`, `false` or no parameter: a plain list).
///
/// # Errors
/// [`ApiError::InvalidQuery`] for any other value.
pub fn wants_watch(query: Option<&str>) -> Result<bool, ApiError> {
    let value = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| match pair.split_once('=') {
        Some(("watch", value)) => Some(value),
        _ if pair == "watch" => Some(""),
        _ => None,
    });
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(_) => Err(ApiError::InvalidQuery("watch must be 1, true, 0 or false")),
    }
}

/// One change a watcher is told.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: WatchEventKind,
    pub view: LeaseView,
}

/// The leases a watcher has been told of, at the version it was told.
#[derive(Default)]
pub struct Told {
    leases: BTreeMap<(String, String), Arc<BerthLease>>,
}

impl Told {
    /// The changes that bring the watcher from what it was told to
    /// `current` (every lease it may read now), and records `current` as told.
    ///
    /// # Guarantees
    /// A lease is `added` once, `modified` only when its resourceVersion
    /// changed, and `deleted` (with the last state told) once it is absent
    /// from `current`. Changes come in namespace and name order, deletions last.
    pub fn update(&mut self, current: Vec<Arc<BerthLease>>) -> Vec<Change> {
        let mut previous = std::mem::take(&mut self.leases);
        let mut changes = Vec::new();
        for lease in current {
            let key = key(&lease);
            let kind = match previous.remove(&key) {
                None => Some(WatchEventKind::Added),
                Some(told) if told.metadata.resource_version != lease.metadata.resource_version => {
                    Some(WatchEventKind::Modified)
                }
                Some(_) => None,
            };
            if let Some(kind) = kind {
                changes.push(Change { kind, view: LeaseView::from_lease(&lease) });
            }
            self.leases.insert(key, lease);
        }
        changes.extend(
            previous
                .into_values()
                .map(|gone| Change { kind: WatchEventKind::Deleted, view: LeaseView::from_lease(&gone) }),
        );
        changes
    }
}

fn key(lease: &BerthLease) -> (String, String) {
    (lease.metadata.namespace.clone().unwrap_or_default(), lease.metadata.name.clone().unwrap_or_default())
}

/// The SSE response of a collection watch for `tenant`: every namespace it
/// may use, or only `namespace`. The caller has checked the key, the
/// namespace and that this apiserver serves it.
pub fn respond(app: Arc<App>, tenant: Tenant, namespace: Option<String>) -> Response {
    // Subscribe before the first read, so no change falls in between.
    let changes = app.cache.subscribe();
    let keep_alive = KeepAlive::new().interval(app.keep_alive);
    Sse::new(events(app, tenant, namespace, changes)).keep_alive(keep_alive).into_response()
}

fn events(
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
                    && self.app.resolver.may_use_namespace(&self.tenant, ns)
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{BerthLeaseSpec, BerthLeaseStatus, LeaseState};

    fn lease(name: &str, rv: &str, state: LeaseState) -> Arc<BerthLease> {
        let mut lease = BerthLease::new(name, BerthLeaseSpec::default());
        lease.metadata.namespace = Some("ns".into());
        lease.metadata.resource_version = Some(rv.into());
        lease.status = Some(BerthLeaseStatus { state, ..Default::default() });
        Arc::new(lease)
    }

    fn told(changes: &[Change]) -> Vec<(&'static str, String, LeaseState)> {
        changes.iter().map(|c| (c.kind.as_str(), c.view.name.clone(), c.view.state)).collect()
    }

    #[test]
    fn a_watcher_is_told_each_lease_once_then_only_what_changed() {
        use LeaseState::*;
        let mut watcher = Told::default();
        let start = watcher.update(vec![lease("a", "1", Held), lease("b", "2", Released)]);
        assert_eq!(told(&start), [("added", "a".into(), Held), ("added", "b".into(), Released)]);
        assert!(watcher.update(vec![lease("a", "1", Held), lease("b", "2", Released)]).is_empty(), "nothing changed");

        let next = watcher.update(vec![lease("a", "3", Released), lease("c", "4", Held)]);
        assert_eq!(
            told(&next),
            [("modified", "a".into(), Released), ("added", "c".into(), Held), ("deleted", "b".into(), Released)],
            "a deletion carries the last state told"
        );
        assert_eq!(
            told(&watcher.update(Vec::new())),
            [("deleted", "a".into(), Released), ("deleted", "c".into(), Held)]
        );
        assert_eq!(told(&watcher.update(vec![lease("a", "9", Held)])), [("added", "a".into(), Held)], "back again");
    }

    #[test]
    fn the_watch_parameter_is_a_kubernetes_boolean() {
        for (query, watch) in [(None, false), (Some("watch=1"), true), (Some("x=y&watch=true"), true)] {
            assert_eq!(wants_watch(query).unwrap(), watch, "{query:?}");
        }
        for query in ["watch=0", "watch=false", "other=1", ""] {
            assert!(!wants_watch(Some(query)).unwrap(), "{query}");
        }
        for query in ["watch=yes", "watch", "watch=2"] {
            let err = wants_watch(Some(query)).unwrap_err();
            assert_eq!(err.to_string(), "watch must be 1, true, 0 or false", "{query}");
        }
    }
}
