//! The lease rules as the REST API applies them, on a real control plane:
//! renew and release with stale tokens, at-least-once with maxHolders,
//! lock-delay, the lease view, the SSE watch and the waiting acquire.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use berth_api::{BerthLease, BerthLeaseSpec, LeaseState, Semantics};
use common::{Events, Harness, KEY_EAST};
use kube::api::PostParams;
use serde_json::{Value, json};
use tower::ServiceExt;

fn acquire(holder: &str, ttl: i32) -> Value {
    json!({"holder": holder, "ttlSeconds": ttl})
}

#[tokio::test]
async fn renew_by_stale_token_is_refused_and_release_by_another_token_conflicts() {
    let h = Harness::new("rules-stale").await;
    let first = h.post("job", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    assert_eq!((first.json["acquired"].as_bool(), first.json["fencingToken"].as_i64()), (Some(true), Some(1)));

    let stale =
        h.post("job", "renew", KEY_EAST, json!({"holder": "east/a", "fencingToken": 7, "ttlSeconds": 60})).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.json["acquired"], false, "{stale:?}");
    assert!(stale.json.get("fencingToken").is_none(), "{stale:?}");
    let wrong_holder =
        h.post("job", "renew", KEY_EAST, json!({"holder": "east/b", "fencingToken": 1, "ttlSeconds": 60})).await;
    assert_eq!(wrong_holder.json["acquired"], false);

    let conflict = h.post("job", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 2})).await;
    assert_eq!((conflict.status.as_u16(), conflict.error()), (409, "lease held by another identity or token"));
    let other = h.post("job", "release", KEY_EAST, json!({"holder": "east/b", "fencingToken": 1})).await;
    assert_eq!(other.status, 409);

    // The right token still renews, and its expiry moved on.
    let renewed =
        h.post("job", "renew", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1, "ttlSeconds": 120})).await;
    assert_eq!((renewed.json["acquired"].as_bool(), renewed.json["fencingToken"].as_i64()), (Some(true), Some(1)));
    assert!(renewed.json["expiresAt"].as_str() > first.json["expiresAt"].as_str(), "{renewed:?}");
    // Release is idempotent.
    for _ in 0..2 {
        let released = h.post("job", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
        assert_eq!(released.status, 204, "{released:?}");
        assert!(released.text.is_empty());
    }
    // Release or renew of a lease that never existed.
    let absent = h.post("never", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(absent.status, 204);
    let lost =
        h.post("never", "renew", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1, "ttlSeconds": 5})).await;
    assert_eq!((lost.status.as_u16(), lost.json["acquired"].as_bool()), (200, Some(false)));
    assert!(h.ns.api::<BerthLease>().get_opt("never").await.unwrap().is_none());
}

#[tokio::test]
async fn at_least_once_admits_up_to_max_holders_with_rising_tokens() {
    let h = Harness::new("rules-alo").await;
    let body =
        |holder: &str| json!({"holder": holder, "ttlSeconds": 60, "semantics": "at-least-once", "maxHolders": 2});
    let a = h.post("pool", "acquire", KEY_EAST, body("east/a")).await;
    let b = h.post("pool", "acquire", KEY_EAST, body("east/b")).await;
    let c = h.post("pool", "acquire", KEY_EAST, body("east/c")).await;
    assert_eq!((a.json["acquired"].as_bool(), a.json["fencingToken"].as_i64()), (Some(true), Some(1)), "{a:?}");
    assert_eq!((b.json["acquired"].as_bool(), b.json["fencingToken"].as_i64()), (Some(true), Some(2)), "{b:?}");
    assert_eq!(c.json["acquired"], false, "{c:?}");
    assert_eq!(c.json["holder"], "east/a", "a refusal names the first live holder");
    assert!(c.json.get("fencingToken").is_none());

    let spec = h.ns.api::<BerthLease>().get("pool").await.unwrap().spec;
    assert_eq!((spec.semantics, spec.max_holders), (Semantics::AtLeastOnce, Some(2)));

    let released = h.post("pool", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(released.status, 204);
    let c = h.post("pool", "acquire", KEY_EAST, body("east/c")).await;
    assert_eq!((c.json["acquired"].as_bool(), c.json["fencingToken"].as_i64()), (Some(true), Some(3)), "{c:?}");

    let view = h.get(&h.lease_path("pool", ""), KEY_EAST).await;
    assert_eq!(view.status, 200);
    let holders: Vec<&str> =
        view.json["holders"].as_array().unwrap().iter().map(|x| x["identity"].as_str().unwrap()).collect();
    assert_eq!(holders, ["east/b", "east/c"], "this replica reads its own writes");
    assert_eq!(view.json["semantics"], "at-least-once");
    assert_eq!(view.json["maxHolders"], 2);
}

#[tokio::test]
async fn lock_delay_holds_off_a_new_holder_after_expiry_but_not_after_release() {
    let h = Harness::new("rules-lockdelay").await;
    let api = h.ns.api::<BerthLease>();
    let spec = BerthLeaseSpec { lock_delay_seconds: 10, ..BerthLeaseSpec::default() };
    api.create(&PostParams::default(), &BerthLease::new("delayed", spec.clone())).await.unwrap();
    api.create(&PostParams::default(), &BerthLease::new("released", spec)).await.unwrap();
    h.wait_cached("delayed").await;
    h.wait_cached("released").await;

    // After a release, the next holder gets in at once.
    let a = h.post("released", "acquire", KEY_EAST, acquire("east/a", 30)).await;
    assert_eq!(a.json["acquired"], true, "{a:?}");
    assert_eq!(
        h.post("released", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await.status,
        204
    );
    let b = h.post("released", "acquire", KEY_EAST, acquire("east/b", 30)).await;
    assert_eq!((b.json["acquired"].as_bool(), b.json["fencingToken"].as_i64()), (Some(true), Some(2)), "{b:?}");

    // After an expiry, nobody gets in until expiresAt + 10 s.
    let a = h.post("delayed", "acquire", KEY_EAST, acquire("east/a", 1)).await;
    assert_eq!(a.json["acquired"], true, "{a:?}");
    let expires_at: chrono::DateTime<chrono::Utc> = a.json["expiresAt"].as_str().unwrap().parse().unwrap();
    berth_testenv::eventually("east/a's expiresAt passes", Duration::from_secs(10), || async {
        (chrono::Utc::now() > expires_at).then_some(())
    })
    .await;
    let delay_end = expires_at + chrono::Duration::seconds(10);
    let early = h.post("delayed", "acquire", KEY_EAST, acquire("east/b", 30)).await;
    // Refused by the lock-delay, or (on a machine slower than the 10 s delay)
    // granted after it, as the grant's own acquiredAt shows: never inside it.
    if early.json["acquired"] == true {
        let granted_at: chrono::DateTime<chrono::Utc> = early.json["acquiredAt"].as_str().unwrap().parse().unwrap();
        assert!(granted_at >= delay_end, "granted during the lock-delay: {early:?}");
    }

    // A waiting acquire is let in when the delay ends, by its own timer.
    let waited =
        h.post("delayed", "acquire", KEY_EAST, json!({"holder": "east/b", "ttlSeconds": 30, "waitSeconds": 60})).await;
    assert_eq!((waited.json["acquired"].as_bool(), waited.json["fencingToken"].as_i64()), (Some(true), Some(2)));
    let acquired_at: chrono::DateTime<chrono::Utc> = waited.json["acquiredAt"].as_str().unwrap().parse().unwrap();
    // Granted, not timed out: the wait was woken when the delay ended.
    assert!(acquired_at >= delay_end, "granted during the lock-delay: {waited:?}");
    let status = api.get("delayed").await.unwrap().status.unwrap();
    assert_eq!((status.state, status.transitions), (LeaseState::Held, 2));
}

#[tokio::test]
async fn waiting_acquire_returns_when_the_holder_releases() {
    let h = Harness::new("rules-wait").await;
    let held = h.post("queue", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    assert_eq!(held.json["acquired"], true);
    h.wait_cached("queue").await;

    let waiter = {
        let router = berth_apiserver::router(h.app.clone());
        let body = json!({"holder": "east/b", "ttlSeconds": 30, "waitSeconds": 60}).to_string();
        let request = Request::post(h.lease_path("queue", "/acquire"))
            .header("authorization", format!("Bearer {KEY_EAST}"))
            .body(Body::from(body))
            .unwrap();
        tokio::spawn(async move {
            let response = router.oneshot(request).await.unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    // Release only once the waiter was refused and waits; had its wait ended
    // unwoken (after waitSeconds), it would answer acquired:false.
    berth_testenv::eventually("east/b is refused and waits", Duration::from_secs(30), || async {
        (h.app.metrics.waiting_acquires.get() == 1).then_some(())
    })
    .await;
    let released = h.post("queue", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(released.status, 204);
    let answer = waiter.await.unwrap();
    assert_eq!(h.app.metrics.waiting_acquires.get(), 0, "no longer counted once answered");
    assert_eq!((answer["acquired"].as_bool(), answer["fencingToken"].as_i64()), (Some(true), Some(2)), "{answer}");
    assert_eq!(answer["holder"], "east/b");

    // Without a release, the wait ends with acquired:false after waitSeconds.
    let timed_out =
        h.post("queue", "acquire", KEY_EAST, json!({"holder": "east/c", "ttlSeconds": 30, "waitSeconds": 1})).await;
    assert_eq!((timed_out.status.as_u16(), timed_out.json["acquired"].as_bool()), (200, Some(false)));
    assert_eq!(timed_out.json["holder"], "east/b");
}

/// The next event, which must be `lease`; returns its data.
async fn next_lease_event(events: &mut Events) -> Value {
    let event = events.next().await;
    assert_eq!(event.event, "lease", "{event:?}");
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn sse_watch_starts_with_the_current_state_and_delivers_each_change() {
    let h = Harness::new("rules-watch").await;
    let held = h.post("watched", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    assert_eq!(held.json["acquired"], true);
    h.wait_cached("watched").await;

    let request = Request::get(h.lease_path("watched", "/watch"))
        .header("authorization", format!("Bearer {KEY_EAST}"))
        .body(Body::empty())
        .unwrap();
    let response = berth_apiserver::router(h.app.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Events::new(response);
    let first = next_lease_event(&mut events).await;
    assert_eq!((first["name"].as_str(), first["state"].as_str()), (Some("watched"), Some("held")));
    assert_eq!(first["holders"][0]["identity"], "east/a");

    let released = h.post("watched", "release", KEY_EAST, json!({"holder": "east/a", "fencingToken": 1})).await;
    assert_eq!(released.status, 204);
    let change =
        tokio::time::timeout(Duration::from_secs(30), next_lease_event(&mut events)).await.expect("the change arrived");
    assert_eq!(change["state"], "released", "{change}");
    assert_eq!(change["holders"], json!([]));

    let taken = h.post("watched", "acquire", KEY_EAST, acquire("east/b", 60)).await;
    assert_eq!(taken.json["fencingToken"], 2);
    let next =
        tokio::time::timeout(Duration::from_secs(30), next_lease_event(&mut events)).await.expect("the change arrived");
    assert_eq!((next["holders"][0]["identity"].as_str(), next["fencingToken"].as_i64()), (Some("east/b"), Some(2)));
}

#[tokio::test]
async fn lease_view_and_lists_are_sorted_and_shaped_as_api_md() {
    let h = Harness::new("rules-view").await;
    for name in ["zeta", "alpha", "mid"] {
        let reply = h.post(name, "acquire", KEY_EAST, acquire("east/a", 45)).await;
        assert_eq!(reply.json["acquired"], true, "{reply:?}");
    }
    for name in ["zeta", "alpha", "mid"] {
        h.wait_cached(name).await;
    }
    let list = h.get(&format!("/v1alpha1/namespaces/{}/leases", h.ns.name), KEY_EAST).await;
    let names: Vec<&str> = list.json["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    let all = h.get("/v1alpha1/leases", KEY_EAST).await;
    assert_eq!(all.json["items"].as_array().unwrap().len(), 3, "{all:?}");

    let view = h.get(&h.lease_path("alpha", ""), KEY_EAST).await;
    let v = &view.json;
    assert_eq!(v["namespace"], h.ns.name.as_str());
    assert_eq!((v["semantics"].as_str(), v["ttlSeconds"].as_i64()), (Some("at-most-once"), Some(45)));
    assert_eq!((v["heartbeatIntervalSeconds"].as_i64(), v["transitions"].as_i64()), (Some(10), Some(1)));
    assert!(v.get("maxHolders").is_none() && v.get("target").is_none(), "{v}");
    let updated = v["updatedAt"].as_str().unwrap();
    assert_eq!(updated.len(), "2026-11-24T06:15:30.191483000Z".len(), "nine fraction digits: {updated}");
    assert!(updated.ends_with('Z'));

    // The created object: declared holder, TTL from the request, owned by the tenant.
    let lease = h.ns.api::<BerthLease>().get("alpha").await.unwrap();
    assert_eq!(lease.spec.holder_identity.as_deref(), Some("east/a"));
    assert_eq!(lease.metadata.labels.unwrap()["berth.skaphos.io/tenant"], "east");
    let status = lease.status.unwrap();
    assert_eq!(status.observed_generation, lease.metadata.generation);
    assert!(lease.metadata.managed_fields.unwrap_or_default().is_empty(), "cleared after the create");
}

#[tokio::test]
async fn a_created_lease_keeps_no_managed_fields_and_a_declared_one_has_its_status_owned_whole() {
    let h = Harness::new("rules-managed").await;
    let renew_twice = |name: &'static str, token: i64| {
        let h = &h;
        async move {
            for _ in 0..2 {
                let body = json!({"holder": "east/a", "fencingToken": token, "ttlSeconds": 60});
                let renewed = h.post(name, "renew", KEY_EAST, body).await;
                assert_eq!(renewed.json["acquired"], true, "{renewed:?}");
            }
        }
    };
    let granted = h.post("owned", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    renew_twice("owned", granted.json["fencingToken"].as_i64().expect("granted")).await;
    // The own write stands in for the cached copy: it carries no managedFields.
    let written = h.app.cache.get(&h.ns.name, "owned").unwrap();
    assert!(written.metadata.managed_fields.is_none(), "recorded write: {:?}", written.metadata.managed_fields);
    // Once the reflector has the same version, the cached object has none either.
    h.wait_cached("owned").await;
    let cached = h.app.cache.get(&h.ns.name, "owned").unwrap();
    assert!(cached.metadata.managed_fields.is_none(), "reflector: {:?}", cached.metadata.managed_fields);
    // The apiserver cleared them after its create, and neither the grant nor
    // the renews added any back.
    let stored = h.ns.api::<BerthLease>().get("owned").await.unwrap();
    let fields = stored.metadata.managed_fields.unwrap_or_default();
    assert!(fields.is_empty(), "a lease the apiserver created: {fields:?}");

    // A lease a user creates keeps its managedFields; the renews own the
    // status as one field (the CRD marks it atomic), not field by field.
    let declared = BerthLease::new("declared", BerthLeaseSpec::default());
    let params = PostParams { field_manager: Some("kubectl-create".to_owned()), ..PostParams::default() };
    h.ns.api::<BerthLease>().create(&params, &declared).await.unwrap();
    h.wait_cached("declared").await;
    let granted = h.post("declared", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    renew_twice("declared", granted.json["fencingToken"].as_i64().expect("granted")).await;
    let stored = h.ns.api::<BerthLease>().get("declared").await.unwrap();
    let fields = stored.metadata.managed_fields.expect("a declared lease keeps its managedFields");
    assert!(fields.iter().any(|m| m.manager.as_deref() == Some("kubectl-create")), "{fields:?}");
    let status_owner = fields
        .iter()
        .find(|m| m.manager.as_deref() == Some("berth-apiserver") && m.subresource.as_deref() == Some("status"))
        .unwrap_or_else(|| panic!("no status entry of berth-apiserver in {fields:?}"));
    let owned = serde_json::to_value(&status_owner.fields_v1).unwrap();
    assert_eq!(owned, json!({"f:status": {}}), "the status is owned whole");
}

#[tokio::test]
async fn acquire_with_a_one_second_ttl_creates_a_valid_lease() {
    let h = Harness::new("rules-short").await;
    let reply = h.post("short", "acquire", KEY_EAST, acquire("east", 1)).await;
    assert_eq!((reply.status.as_u16(), reply.json["acquired"].as_bool()), (200, Some(true)), "{reply:?}");
    let spec = h.ns.api::<BerthLease>().get("short").await.unwrap().spec;
    assert!(spec.heartbeat_interval_seconds < spec.ttl_seconds, "{spec:?}");
}

#[tokio::test]
async fn sse_watch_sends_a_comment_line_as_keep_alive() {
    let h = Harness::new("rules-keepalive").await;
    let held = h.post("quiet", "acquire", KEY_EAST, acquire("east/a", 60)).await;
    assert_eq!(held.json["acquired"], true);
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
    berth_testenv::eventually("the second cache syncs", Duration::from_secs(30), || async {
        app.cache.is_ready().then_some(())
    })
    .await;
    let request = Request::get(h.lease_path("quiet", "/watch"))
        .header("authorization", format!("Bearer {KEY_EAST}"))
        .body(Body::empty())
        .unwrap();
    let mut events = Events::new(berth_apiserver::router(app).oneshot(request).await.unwrap());
    let first = next_lease_event(&mut events).await;
    assert_eq!(first["state"], "held");
    // 30 s is only a failure bound: without keep-alives nothing else is sent.
    let comment =
        tokio::time::timeout(Duration::from_secs(30), events.next_without_event()).await.expect("a keep-alive arrives");
    assert!(comment.starts_with(':'), "{comment:?}");
}
