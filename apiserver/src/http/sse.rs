//! Server-Sent Events: the watch of one lease.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api::BerthLease;
use berth_api::wire::LeaseView;
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use tokio::sync::watch;

use crate::error::ApiError;

use super::App;
use super::extract::LeasePath;

/// SSE keep-alive period (API.md: a comment line every 15 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn watch_lease(
    State(app): State<Arc<App>>,
    path: LeasePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = app.authenticate(&headers).await?;
    app.authorize(&tenant, &path.namespace, None)?;
    path.check(&app)?;
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
