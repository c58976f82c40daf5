//! The collection watch (`GET …/leases?watch=1`) through the router, on a
//! real control plane: the starting state, added/modified/deleted events,
//! and tenant isolation.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use berth_api::BerthLease;
use common::{Events, Harness, KEY_ANY, KEY_EAST, KEY_WEST};
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Generous bound on waiting for one event; events normally follow within milliseconds.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

struct Watch(Events);

impl Watch {
    async fn open(h: &Harness, path: &str, key: &str) -> Self {
        let request = Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
        let response = berth_apiserver::router(h.app.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self(Events::new(response))
    }

    /// The next event as (name, data).
    async fn next(&mut self) -> (String, Value) {
        let event = tokio::time::timeout(EVENT_TIMEOUT, self.0.next()).await.expect("an event within the bound");
        (event.event, serde_json::from_str(&event.data).unwrap())
    }

    /// Events up to and including the bookmark, as (name, lease name).
    async fn initial(&mut self) -> Vec<(String, String)> {
        let mut events = Vec::new();
        loop {
            let (kind, data) = self.next().await;
            if kind == "bookmark" {
                assert_eq!(data, json!({"initialEventsEnd": true}));
                return events;
            }
            events.push((kind, data["name"].as_str().unwrap().to_owned()));
        }
    }
}

fn acquire(holder: &str) -> Value {
    json!({"holder": holder, "ttlSeconds": 60})
}

fn added(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|n| ("added".to_owned(), n.to_string())).collect()
}

#[tokio::test]
async fn collection_watch_starts_with_one_added_per_readable_lease_then_a_bookmark() {
    let h = Harness::new("cwatch-start").await;
    for (name, key, holder) in
        [("east-b", KEY_EAST, "east/a"), ("east-a", KEY_EAST, "east/a"), ("west-a", KEY_WEST, "west")]
    {
        let reply = h.post(name, "acquire", key, acquire(holder)).await;
        assert_eq!(reply.json["acquired"], true, "{reply:?}");
    }
    // Created with kubectl: no tenant label, so every tenant of the namespace reads it.
    h.ns.api::<BerthLease>()
        .create(&PostParams::default(), &BerthLease::new("shared", Default::default()))
        .await
        .unwrap();
    for name in ["east-a", "east-b", "west-a", "shared"] {
        h.wait_cached(name).await;
    }

    let ns_watch = format!("/v1alpha1/namespaces/{}/leases?watch=1", h.ns.name);
    let mut east = Watch::open(&h, "/v1alpha1/leases?watch=1", KEY_EAST).await;
    assert_eq!(east.initial().await, added(&["east-a", "east-b", "shared"]));
    let mut east_ns = Watch::open(&h, &ns_watch, KEY_EAST).await;
    assert_eq!(east_ns.initial().await, added(&["east-a", "east-b", "shared"]));
    let mut west = Watch::open(&h, &ns_watch, KEY_WEST).await;
    assert_eq!(west.initial().await, added(&["shared", "west-a"]));
    // A tenant of every namespace still reads no lease labelled for another tenant.
    let mut any = Watch::open(&h, "/v1alpha1/leases?watch=true", KEY_ANY).await;
    assert_eq!(any.initial().await, added(&["shared"]));

    // The added events carry the whole Lease view.
    let mut again = Watch::open(&h, &ns_watch, KEY_EAST).await;
    let (kind, view) = again.next().await;
    assert_eq!(kind, "added");
    assert_eq!((view["namespace"].as_str(), view["name"].as_str()), (Some(h.ns.name.as_str()), Some("east-a")));
    assert_eq!((view["state"].as_str(), view["fencingToken"].as_i64()), (Some("held"), Some(1)));
    assert_eq!(view["holders"][0]["identity"], "east/a");
}

#[tokio::test]
async fn an_empty_collection_watch_sends_the_bookmark_alone() {
    let h = Harness::new("cwatch-empty").await;
    let mut watch = Watch::open(&h, "/v1alpha1/leases?watch=1", KEY_EAST).await;
    assert_eq!(watch.initial().await, Vec::<(String, String)>::new());
}

#[tokio::test]
async fn collection_watch_tells_each_add_change_and_delete() {
    let h = Harness::new("cwatch-changes").await;
    let mut watch = Watch::open(&h, &format!("/v1alpha1/namespaces/{}/leases?watch=1", h.ns.name), KEY_EAST).await;
    assert!(watch.initial().await.is_empty());

    let granted = h.post("job", "acquire", KEY_EAST, acquire("east/a")).await;
    assert_eq!(granted.json["acquired"], true);
    // The create and the grant may come as one event or two: the state settles on held.
    let (kind, first) = watch.next().await;
    assert_eq!((kind.as_str(), first["name"].as_str()), ("added", Some("job")), "{first}");
    let mut view = first;
    while view["state"] != "held" {
        let (kind, next) = watch.next().await;
        assert_eq!(kind, "modified", "{next}");
        view = next;
    }
    assert_eq!((view["holders"][0]["identity"].as_str(), view["fencingToken"].as_i64()), (Some("east/a"), Some(1)));

    let released = h.post("job", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(released.status, 204);
    let (kind, view) = watch.next().await;
    assert_eq!(
        (kind.as_str(), view["state"].as_str(), view["holders"].clone()),
        ("modified", Some("released"), json!([]))
    );

    let taken = h.post("job", "acquire", KEY_EAST, acquire("east/b")).await;
    assert_eq!(taken.json["fencingToken"], 2);
    let (kind, view) = watch.next().await;
    assert_eq!((kind.as_str(), view["holders"][0]["identity"].as_str()), ("modified", Some("east/b")));
    assert_eq!((view["fencingToken"].as_i64(), view["transitions"].as_i64()), (Some(2), Some(2)));

    h.ns.api::<BerthLease>().delete("job", &DeleteParams::default()).await.unwrap();
    let (kind, view) = watch.next().await;
    assert_eq!(kind, "deleted");
    assert_eq!(
        (view["name"].as_str(), view["holders"][0]["identity"].as_str()),
        (Some("job"), Some("east/b")),
        "the last state"
    );
}

#[tokio::test]
async fn another_tenants_changes_never_reach_a_collection_watch() {
    let h = Harness::new("cwatch-isolation").await;
    let ns_watch = format!("/v1alpha1/namespaces/{}/leases?watch=1", h.ns.name);
    let mut east = Watch::open(&h, "/v1alpha1/leases?watch=1", KEY_EAST).await;
    assert!(east.initial().await.is_empty());
    let mut any = Watch::open(&h, "/v1alpha1/leases?watch=1", KEY_ANY).await;
    assert!(any.initial().await.is_empty());

    // West creates, changes and deletes a lease of its own.
    let granted = h.post("west-secret", "acquire", KEY_WEST, acquire("west")).await;
    assert_eq!(granted.json["acquired"], true);
    let released = h.post("west-secret", "release", KEY_WEST, json!({"holder": "west", "fencingToken": 1})).await;
    assert_eq!(released.status, 204);
    h.wait_cached("west-secret").await;
    h.ns.api::<BerthLease>().delete("west-secret", &DeleteParams::default()).await.unwrap();
    berth_testenv::eventually("the delete reaches the cache", Duration::from_secs(5), || async {
        h.app.cache.get(&h.ns.name, "west-secret").is_none().then_some(())
    })
    .await;

    // Then east acquires: the first thing either watcher hears of is east's
    // lease (and `any` hears nothing of it: it carries east's label).
    let granted = h.post("east-sentinel", "acquire", KEY_EAST, acquire("east")).await;
    assert_eq!(granted.json["acquired"], true);
    let (kind, view) = east.next().await;
    assert_eq!((kind.as_str(), view["name"].as_str()), ("added", Some("east-sentinel")), "{view}");
    let shared = BerthLease::new("shared-sentinel", Default::default());
    h.ns.api::<BerthLease>().create(&PostParams::default(), &shared).await.unwrap();
    let (kind, view) = any.next().await;
    assert_eq!((kind.as_str(), view["name"].as_str()), ("added", Some("shared-sentinel")), "{view}");

    // A namespace the tenant may not use cannot be watched at all.
    let other = h.get("/v1alpha1/namespaces/kube-system/leases?watch=1", KEY_EAST).await;
    assert_eq!((other.status.as_u16(), other.error()), (403, "not authorized for this namespace"));
    let unauthenticated = h.get(&ns_watch, "wrong-key").await;
    assert_eq!((unauthenticated.status.as_u16(), unauthenticated.error()), (401, "unauthorized"));
}

#[tokio::test]
async fn the_watch_parameter_takes_kubernetes_booleans_only() {
    let h = Harness::new("cwatch-param").await;
    let list = format!("/v1alpha1/namespaces/{}/leases", h.ns.name);
    for path in [format!("{list}?watch=0"), format!("{list}?watch=false"), "/v1alpha1/leases?watch=0".to_owned()] {
        let reply = h.get(&path, KEY_EAST).await;
        assert_eq!((reply.status.as_u16(), reply.json["items"].clone()), (200, json!([])), "{path}");
    }
    for path in [format!("{list}?watch=yes"), "/v1alpha1/leases?watch".to_owned()] {
        let reply = h.get(&path, KEY_EAST).await;
        assert_eq!((reply.status.as_u16(), reply.error()), (400, "watch must be 1, true, 0 or false"), "{path}");
    }
}

#[tokio::test]
async fn a_quiet_collection_watch_sends_a_comment_line_as_keep_alive() {
    let h = Harness::new("cwatch-keepalive").await;
    // The same app state with a short period (15 s in production).
    let mut app = berth_apiserver::App::start(
        h.ns.client.clone(),
        std::slice::from_ref(&h.ns.name),
        h.app.authenticator.clone(),
        h.app.metrics.clone(),
        h.app.shutdown.clone(),
        Default::default(),
    );
    std::sync::Arc::get_mut(&mut app).expect("sole owner").keep_alive = Duration::from_millis(200);
    berth_testenv::eventually("the cache syncs", std::time::Duration::from_secs(30), || async {
        app.cache.is_ready().then_some(())
    })
    .await;
    let request = Request::get("/v1alpha1/leases?watch=1")
        .header("authorization", format!("Bearer {KEY_EAST}"))
        .body(Body::empty())
        .unwrap();
    let mut events = Events::new(berth_apiserver::router(app).oneshot(request).await.unwrap());
    let (bookmark, comment) = tokio::time::timeout(EVENT_TIMEOUT, async {
        let bookmark = events.next().await;
        (bookmark, events.next_without_event().await)
    })
    .await
    .expect("an event and a keep-alive within the bound");
    assert_eq!(bookmark.event, "bookmark", "{bookmark:?}");
    assert!(comment.starts_with(':'), "a comment line follows on a quiet stream: {comment:?}");
}
