//! berth-client against the real apiserver binary on the real control plane
//! (`berth_testenv`): every call, every error variant, TLS, and the
//! LeaseKeeper under failure. Run `cargo build -p berth-apiserver` first.

use std::time::Duration;

use berth_api::BerthLease;
use berth_client::{
    AcquireRequest, Client, Error, KeeperOptions, KeeperState, LeaseKeeper, Loss, ReleaseRequest, RenewReport,
    RenewRequest, RenewResult,
};
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::proxy::{Mode, Proxy};
use chrono::Utc;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::time::Instant;

struct Env {
    ns: TestNamespace,
    server: ApiServer,
}

impl Env {
    /// An apiserver for tenant `team` (limited to a fresh namespace) and
    /// tenant `other` (limited to a namespace of its own).
    async fn start(prefix: &str) -> Self {
        let ns = TestNamespace::new(prefix).await;
        let tenants = vec![Tenant::new("team", &[&ns.name]), Tenant::new("other", &["elsewhere"])];
        let server = ApiServer::start(tenants, &[], &[]);
        Self { ns, server }
    }

    fn client(&self, tenant: &str) -> Client {
        Client::builder(&self.server.url)
            .api_key(self.server.key(tenant))
            .ca_file(&self.server.ca_file)
            .expect("CA file reads")
            .build()
            .expect("client builds")
    }

    fn leases(&self) -> Api<BerthLease> {
        self.ns.api()
    }

    /// The server-side expiry of `holder`, straight from the BerthLease status.
    async fn server_expiry(&self, name: &str, holder: &str) -> chrono::DateTime<Utc> {
        let lease = self.leases().get(name).await.expect("lease reads");
        let status = lease.status.expect("lease has a status");
        status.holders.iter().find(|h| h.identity == holder).expect("holder is in the status").expires_at
    }
}

fn acquire(holder: &str, ttl: i32) -> AcquireRequest {
    AcquireRequest { holder: holder.into(), ttl_seconds: ttl, ..Default::default() }
}

#[tokio::test]
async fn every_call_round_trips_against_the_real_apiserver() {
    let env = Env::start("client-calls").await;
    let client = env.client("team");
    let ns = env.ns.name.as_str();

    client.ping().await.expect("ping");

    let grant = client.acquire(ns, "alpha", &acquire("team/w1", 30)).await.expect("acquire");
    assert_eq!(grant.holder, "team/w1");
    assert_eq!(grant.fencing_token, 1);
    assert!(grant.expires_at.is_some_and(|t| t > Utc::now()));

    let again = client.acquire(ns, "alpha", &acquire("team/w1", 30)).await.expect("idempotent acquire");
    assert_eq!(again.fencing_token, 1, "an acquire by the live holder is a renew");

    let renew = RenewRequest { holder: "team/w1".into(), fencing_token: 1, ttl_seconds: 30 };
    assert_eq!(client.renew(ns, "alpha", &renew).await.expect("renew").fencing_token, 1);

    let view = eventually(|| client.get(ns, "alpha"), |v| !v.holders.is_empty()).await;
    assert_eq!((view.name.as_str(), view.holders.len(), view.fencing_token), ("alpha", 1, 1));

    client.acquire(ns, "beta", &acquire("team", 30)).await.expect("acquire beta");
    let listed = eventually(|| client.list(ns), |items| items.len() == 2).await;
    let names: Vec<_> = listed.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let all = eventually(|| client.list_all(), |items| items.len() == 2).await;
    assert!(all.iter().all(|v| v.namespace == ns), "{all:?}");

    client.release(ns, "alpha", &ReleaseRequest { holder: "team/w1".into(), fencing_token: 1 }).await.expect("release");
    client
        .release(ns, "alpha", &ReleaseRequest { holder: "team/w1".into(), fencing_token: 1 })
        .await
        .expect("release is idempotent");
    eventually(|| client.get(ns, "alpha"), |v| v.holders.is_empty()).await;
}

/// The apiserver reads from its informer cache, which can lag a write by a
/// moment: repeats `read` until `check` accepts its answer (10 s at most).
async fn eventually<T, F: std::future::Future<Output = Result<T, Error>>>(
    read: impl Fn() -> F,
    check: impl Fn(&T) -> bool,
) -> T {
    berth_testenv::eventually("the apiserver's cache shows the write", Duration::from_secs(10), || async {
        read().await.ok().filter(|value| check(value))
    })
    .await
}

#[tokio::test]
async fn each_refusal_is_its_own_error_variant_with_the_server_message() {
    let env = Env::start("client-errors").await;
    let client = env.client("team");
    let ns = env.ns.name.as_str();
    client.acquire(ns, "held", &acquire("team/a", 30)).await.expect("acquire");

    match client.acquire(ns, "held", &acquire("team/b", 30)).await {
        Err(Error::NotAcquired { current }) => {
            assert_eq!(current.holder, "team/a");
            assert!(current.fencing_token.is_none());
        }
        other => panic!("expected NotAcquired, got {other:?}"),
    }
    let stale = RenewRequest { holder: "team/a".into(), fencing_token: 99, ttl_seconds: 30 };
    assert!(matches!(client.renew(ns, "held", &stale).await, Err(Error::NotAcquired { .. })));

    let wrong = ReleaseRequest { holder: "team/b".into(), fencing_token: 1 };
    match client.release(ns, "held", &wrong).await {
        Err(Error::Conflict(message)) => assert_eq!(message, "lease held by another identity or token"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match client.get(ns, "missing").await {
        Err(Error::NotFound(message)) => assert_eq!(message, "lease not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client.acquire(ns, "held", &acquire("team/a", 0)).await {
        Err(Error::InvalidRequest(message)) => assert_eq!(message, "ttlSeconds must be positive"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    match client.acquire(ns, "held", &acquire("intruder", 30)).await {
        Err(Error::Forbidden(message)) => assert_eq!(message, "holder not authorized for this identity"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    match env.client("other").get(ns, "held").await {
        Err(Error::Forbidden(message)) => assert_eq!(message, "not authorized for this namespace"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let bad_key =
        Client::builder(&env.server.url).api_key("nope").ca_file(&env.server.ca_file).unwrap().build().unwrap();
    match bad_key.list(ns).await {
        Err(Error::Unauthorized(message)) => assert_eq!(message, "unauthorized"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_naming_the_cause() {
    let mut env = Env::start("client-transport").await;
    let client = env.client("team");
    env.server.kill();
    match client.list(&env.ns.name).await {
        Err(e @ Error::Transport { .. }) => assert!(e.to_string().contains("Connection refused"), "{e}"),
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[tokio::test]
async fn acquire_with_wait_is_granted_when_the_holder_releases() {
    let env = Env::start("client-wait").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    // Held past the wait, so that only the release can end it with a grant.
    let first = client.acquire(&ns, "queue", &acquire("team/a", 120)).await.expect("acquire");

    let waiter = {
        let client = client.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            let request = AcquireRequest { wait_seconds: Some(60), ..acquire("team/b", 30) };
            client.acquire(&ns, "queue", &request).await
        })
    };
    // Released only once the apiserver counts the acquire as waiting.
    berth_testenv::eventually("the acquire waits", Duration::from_secs(30), || async {
        (env.server.metric("berth_apiserver_waiting_acquires") == Some(1.0)).then_some(())
    })
    .await;
    assert!(!waiter.is_finished(), "the waiting acquire returned before the release");
    let release = ReleaseRequest { holder: "team/a".into(), fencing_token: first.fencing_token };
    client.release(&ns, "queue", &release).await.expect("release");
    let grant = waiter.await.unwrap().expect("the waiter is granted");
    assert_eq!((grant.holder.as_str(), grant.fencing_token), ("team/b", 2));
}

#[tokio::test]
async fn watch_streams_the_current_state_then_each_change_and_ends_on_delete() {
    let env = Env::start("client-watch").await;
    let client = env.client("team");
    let ns = env.ns.name.as_str();
    let grant = client.acquire(ns, "watched", &acquire("team/a", 30)).await.expect("acquire");

    // The watch serves the apiserver's informer cache, which may lag the
    // write a moment: wait for each state rather than expect it first.
    let mut stream = client.watch(ns, "watched").await.expect("watch starts");
    next_view_where(&mut stream, |v| v.holders.first().is_some_and(|h| h.identity == "team/a")).await;

    client
        .release(ns, "watched", &ReleaseRequest { holder: "team/a".into(), fencing_token: grant.fencing_token })
        .await
        .expect("release");
    next_view_where(&mut stream, |v| v.holders.is_empty() && v.state == berth_api::LeaseState::Released).await;

    env.leases().delete("watched", &DeleteParams::default()).await.expect("delete");
    while let Some(item) = next_event(&mut stream).await {
        item.expect("only views until the end");
    }
}

#[tokio::test]
async fn collection_watches_list_the_tenants_leases_then_follow_each_change() {
    use berth_client::LeaseEvent;
    let env = Env::start("client-cwatch").await;
    let (team, other) = (env.client("team"), env.client("other"));
    let ns = env.ns.name.as_str();
    team.acquire(ns, "present", &acquire("team/a", 30)).await.expect("acquire");
    // Wait until the cache has it, so the starting list must contain it.
    eventually(|| team.list(ns), |items| !items.is_empty()).await;

    let mut all = team.watch_all().await.expect("watch_all starts");
    let mut one = team.watch_namespace(ns).await.expect("watch_namespace starts");
    for stream in [&mut all, &mut one] {
        assert!(matches!(next(stream).await, LeaseEvent::Added(v) if v.name == "present"));
        assert_eq!(next(stream).await, LeaseEvent::InitialEventsEnd);
    }
    // Another tenant's watch starts empty and stays so.
    let mut others = other.watch_all().await.expect("the other tenant's watch starts");
    assert_eq!(next(&mut others).await, LeaseEvent::InitialEventsEnd);

    let grant = team.acquire(ns, "fresh", &acquire("team/b", 30)).await.expect("acquire");
    for stream in [&mut all, &mut one] {
        let mut event = next(stream).await;
        assert!(matches!(&event, LeaseEvent::Added(v) if v.name == "fresh"), "{event:?}");
        // The create and the grant may arrive as one event or two.
        while !matches!(&event, LeaseEvent::Added(v) | LeaseEvent::Modified(v) if v.fencing_token == grant.fencing_token)
        {
            event = next(stream).await;
        }
    }
    team.release(ns, "fresh", &ReleaseRequest { holder: "team/b".into(), fencing_token: grant.fencing_token })
        .await
        .expect("release");
    for stream in [&mut all, &mut one] {
        assert!(matches!(next(stream).await, LeaseEvent::Modified(v) if v.holders.is_empty()));
    }
    env.leases().delete("fresh", &DeleteParams::default()).await.expect("delete");
    for stream in [&mut all, &mut one] {
        assert!(matches!(next(stream).await, LeaseEvent::Deleted(v) if v.name == "fresh"));
    }

    let err = other.watch_namespace(ns).await.err().expect("a namespace the tenant may not use");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
}

/// The next event of a collection watch, within 10 s.
async fn next(stream: &mut berth_client::LeaseEventStream) -> berth_client::LeaseEvent {
    let item = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    item.expect("an event within 10 s").expect("the watch goes on").expect("an event")
}

/// Reads views until one satisfies `wanted`.
async fn next_view_where(stream: &mut berth_client::LeaseStream, wanted: impl Fn(&berth_client::LeaseView) -> bool) {
    loop {
        let view = next_event(stream).await.expect("the watch goes on").expect("a view");
        if wanted(&view) {
            return;
        }
    }
}

async fn next_event(stream: &mut berth_client::LeaseStream) -> Option<Result<berth_client::LeaseView, Error>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an event within 10 s")
}

#[tokio::test]
async fn ca_file_is_trusted_and_an_unknown_ca_fails_with_a_clear_message() {
    let env = Env::start("client-tls").await;
    env.client("team").ping().await.expect("ping with the right CA");

    let system_roots = Client::builder(&env.server.url).build().unwrap();
    let err = system_roots.ping().await.expect_err("the test CA is not in the system store");
    assert!(err.to_string().contains("signed by an unknown certificate authority"), "{err}");

    let other_ca = std::env::temp_dir().join(format!("berth-client-other-ca-{}", std::process::id()));
    let status = std::process::Command::new(berth_testenv::repo_root().join("hack/gen-tls.sh")).arg(&other_ca).status();
    assert!(status.is_ok_and(|s| s.success()));
    let wrong_ca = Client::builder(&env.server.url).ca_file(other_ca.join("ca.crt")).unwrap().build().unwrap();
    let err = wrong_ca.ping().await.expect_err("another CA does not vouch for this server");
    assert!(err.to_string().contains("signed by an unknown certificate authority"), "{err}");
    std::fs::remove_dir_all(&other_ca).unwrap();

    let insecure = Client::builder(&env.server.url).danger_accept_invalid_certs().build().unwrap();
    insecure.ping().await.expect("insecure skips the check");
}

fn keeper_options(ns: &str, name: &str, holder: &str) -> KeeperOptions {
    KeeperOptions::new(ns, name, holder, Duration::from_secs(4)).margin(Duration::from_secs(1))
}

#[tokio::test]
async fn keeper_renews_past_the_ttl_and_releases_on_drop() {
    let env = Env::start("keeper-renews").await;
    let client = env.client("team");
    let ns = env.ns.name.as_str();
    let keeper = LeaseKeeper::acquire(client.clone(), keeper_options(ns, "kept", "team/k")).await.expect("acquire");
    assert_eq!(keeper.fencing_token(), 1);
    let first_deadline = keeper.deadline().expect("held");

    // Only renewals keep it past the grant's TTL: the server's expiry moves on
    // past the grant's own while the clock passes it, with the same token.
    let granted = eventually(|| client.get(ns, "kept"), |v| !v.holders.is_empty()).await;
    let grant_expiry = granted.holders[0].expires_at;
    let view = eventually(
        || client.get(ns, "kept"),
        |v| v.holders.first().is_some_and(|h| Utc::now() > grant_expiry && h.expires_at > Utc::now()),
    )
    .await;
    assert_eq!(view.holders[0].fencing_token, 1, "renewals keep the token");
    assert!(keeper.is_held(), "renewals keep it held");
    assert!(keeper.deadline().expect("held") > first_deadline, "each renew moves the deadline");

    drop(keeper);
    eventually(|| client.get(ns, "kept"), |v| v.holders.is_empty()).await;
}

#[tokio::test]
async fn keeper_reports_loss_by_its_local_deadline_when_the_apiserver_is_stopped() {
    let mut env = Env::start("keeper-deadline").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    let keeper = LeaseKeeper::acquire(client, keeper_options(&ns, "cut-off", "team/k")).await.expect("acquire");

    env.server.terminate();
    let deadline = keeper.deadline().expect("held when the server stops");
    // The same deadline on the wall clock, to compare with the server's expiry.
    let (wall, now) = (Utc::now(), Instant::now());
    let deadline_wall = wall + (deadline - now);
    let server_expiry = env.server_expiry("cut-off", "team/k").await;
    assert!(
        deadline_wall < server_expiry,
        "the deadline {deadline_wall} must come before the server's expiry {server_expiry}"
    );

    // 10 s is only a failure bound.
    let loss = tokio::time::timeout(Duration::from_secs(10), keeper.lost()).await.expect("loss is reported");
    let lost_at = Instant::now();
    assert_eq!(loss, Loss::DeadlinePassed);
    assert!(!keeper.is_held(), "never claims to hold after the deadline");
    assert!(lost_at >= deadline, "loss is not reported before the deadline");
    eprintln!(
        "keeper: loss seen {:?} after the local deadline, which is {:?} before the server's expiresAt",
        lost_at - deadline,
        (server_expiry - deadline_wall).to_std().unwrap()
    );
}

#[tokio::test]
async fn keeper_is_never_held_after_its_deadline_even_before_its_task_runs() {
    let mut env = Env::start("keeper-never-past").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    let keeper = LeaseKeeper::acquire(client, keeper_options(&ns, "cut-off", "team/k")).await.expect("acquire");
    let state = keeper.subscribe();
    env.server.terminate();
    let deadline = keeper.deadline().expect("held");
    // Block this thread past the deadline: the answer comes from the clock,
    // not from the background task having noticed.
    std::thread::sleep((deadline - Instant::now()) + Duration::from_millis(10));
    assert!(!keeper.is_held());
    assert!(!state.borrow().holds_at(Instant::now()));
}

#[tokio::test]
async fn keeper_reports_loss_at_once_when_a_renew_is_refused_after_a_takeover() {
    let env = Env::start("keeper-takeover").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    // Without the watch, so that the refused renew alone is what reports it.
    let options = KeeperOptions::new(&ns, "taken", "team/k", Duration::from_secs(30))
        .heartbeat(Duration::from_secs(1))
        .watch(false);
    let keeper = LeaseKeeper::acquire(client.clone(), options).await.expect("acquire");

    take_over(&env, "taken", "team/usurper").await;
    // Refused, not DeadlinePassed: the refused renew reported it, before the
    // deadline 29 s away (10 s is only a failure bound).
    let loss = tokio::time::timeout(Duration::from_secs(10), keeper.lost()).await.expect("loss is reported");
    assert_eq!(loss, Loss::Refused { holder: "team/usurper".into() });
    assert!(!keeper.is_held());
}

#[tokio::test]
async fn keeper_with_watch_notices_a_takeover_before_its_next_heartbeat() {
    let env = Env::start("keeper-watch").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    // The next heartbeat is an hour away, so a renew within this test comes
    // from the watch. A takeover before the watch starts is seen too: the
    // watch starts with the current state.
    let options =
        KeeperOptions::new(&ns, "taken", "team/k", Duration::from_secs(7200)).heartbeat(Duration::from_secs(3600));
    let keeper = LeaseKeeper::acquire(client, options).await.expect("acquire");
    assert!(keeper.schedule().heartbeat > Duration::from_secs(3000), "{:?}", keeper.schedule());
    take_over(&env, "taken", "team/usurper").await;
    // 60 s is only a failure bound.
    let loss = tokio::time::timeout(Duration::from_secs(60), keeper.lost()).await.expect("loss is reported");
    assert_eq!(loss, Loss::Refused { holder: "team/usurper".into() });
}

/// An administrator's takeover: the status now names another holder with a
/// newer token, as a grant after an expiry would.
async fn take_over(env: &Env, name: &str, usurper: &str) {
    let api = env.leases();
    let mut lease = api.get(name).await.expect("lease reads");
    let status = lease.status.as_mut().expect("status");
    let now = Utc::now();
    status.fencing_token += 1;
    status.transitions += 1;
    status.holders = vec![berth_api::Holder {
        identity: usurper.into(),
        fencing_token: status.fencing_token,
        acquired_at: now,
        renewed_at: now,
        expires_at: now + chrono::TimeDelta::seconds(60),
    }];
    api.replace_status(name, &PostParams::default(), &lease).await.expect("status replaced");
}

/// A client of tenant "team" whose connections to the apiserver pass a proxy
/// the test controls. It would wait a minute for an answer, so only a
/// keeper's own bounds can end a hung call in time.
fn proxied_client(env: &Env) -> (Proxy, Client) {
    let upstream = reqwest::Url::parse(&env.server.url).expect("server URL");
    let upstream = upstream.socket_addrs(|| None).expect("server address")[0];
    let proxy = Proxy::start(upstream).expect("proxy starts");
    let client = Client::builder(format!("https://{}", proxy.addr()))
        .api_key(env.server.key("team"))
        .ca_file(&env.server.ca_file)
        .expect("CA file reads")
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client builds");
    (proxy, client)
}

#[tokio::test]
async fn keeper_abandons_a_hung_renew_and_keeps_the_lease_over_a_fresh_connection() {
    let env = Env::start("keeper-hung").await;
    let ns = env.ns.name.clone();
    let (proxy, client) = proxied_client(&env);
    let options = KeeperOptions::new(&ns, "hung", "team/k", Duration::from_secs(8))
        .margin(Duration::from_secs(1))
        .heartbeat(Duration::from_secs(1))
        .watch(false);
    let keeper = LeaseKeeper::acquire(client, options).await.expect("acquire");
    let mut state = keeper.subscribe();
    let held = |state: &KeeperState| match state {
        KeeperState::Held { deadline, at_risk, .. } => Some((*deadline, *at_risk)),
        other => panic!("the keeper lost the lease: {other:?}"),
    };
    let first = keeper.deadline().expect("held");
    // One renew through the proxy, so that its connection is pooled.
    wait_for_state(&mut state, |s| held(s).is_some_and(|(deadline, _)| deadline > first)).await;

    proxy.set_mode(Mode::Blackhole);
    let cut = keeper.deadline().expect("held");
    // No answer ever comes back: only abandoning the renew flags the risk.
    wait_for_state(&mut state, |s| held(s).is_some_and(|(_, at_risk)| at_risk)).await;
    assert!(keeper.is_held(), "at risk, but held until the deadline");

    proxy.set_mode(Mode::Pass);
    wait_for_state(&mut state, |s| held(s).is_some_and(|(deadline, at_risk)| !at_risk && deadline > cut)).await;
    assert!(keeper.is_held());
    let holders = env.leases().get("hung").await.expect("lease reads").status.expect("status").holders;
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].identity.as_str(), holders[0].fencing_token), ("team/k", keeper.fencing_token()));
    keeper.release().await.expect("release over a fresh connection");
}

/// Waits until the keeper publishes a state that satisfies `done`; 30 s is
/// only a failure bound.
async fn wait_for_state(
    state: &mut tokio::sync::watch::Receiver<KeeperState>,
    mut done: impl FnMut(&KeeperState) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| done(s)))
        .await
        .expect("the state came within 30 s")
        .expect("the keeper is running");
}

/// The reports a keeper's observer was given, shared with the test.
#[derive(Clone, Default)]
struct Reports(std::sync::Arc<std::sync::Mutex<Vec<RenewReport>>>);

impl Reports {
    fn observe(&self, options: KeeperOptions) -> KeeperOptions {
        let reports = self.clone();
        options.on_renew(move |report| reports.0.lock().expect("reports lock").push(report))
    }

    fn all(&self) -> Vec<RenewReport> {
        self.0.lock().expect("reports lock").clone()
    }

    /// Waits until a report with `result` comes after the first `seen`; returns it.
    async fn wait_for(&self, result: RenewResult, seen: usize) -> RenewReport {
        berth_testenv::eventually(&format!("a {result:?} renew is reported"), Duration::from_secs(30), || async {
            self.all().into_iter().skip(seen).find(|r| r.result == result)
        })
        .await
    }
}

#[tokio::test]
async fn keeper_reports_renews_and_abandon_stops_renewing_without_a_release() {
    let env = Env::start("keeper-abandon").await;
    let client = env.client("team");
    let ns = env.ns.name.clone();
    let reports = Reports::default();
    let options = reports.observe(
        KeeperOptions::new(&ns, "left", "team/k", Duration::from_secs(4))
            .margin(Duration::from_secs(1))
            .heartbeat(Duration::from_secs(1))
            .watch(false),
    );
    let keeper = LeaseKeeper::acquire(client.clone(), options).await.expect("acquire");
    let renewed = reports.wait_for(RenewResult::Renewed, 0).await;
    assert!(renewed.latency > Duration::ZERO, "{renewed:?}");

    keeper.abandon().await;
    let reported = reports.all().len();
    let holders = env.leases().get("left").await.expect("lease reads").status.expect("status").holders;
    assert_eq!(holders.len(), 1, "not released: {holders:?}");
    assert_eq!((holders[0].identity.as_str(), holders[0].fencing_token), ("team/k", 1));
    let last_renew = holders[0].renewed_at;
    match client.acquire(&ns, "left", &acquire("team/j", 4)).await {
        Err(Error::NotAcquired { current }) => assert_eq!(current.holder, "team/k", "still held after abandon"),
        other => panic!("the abandoned lease was granted to another at once: {other:?}"),
    }

    // Granted to a waiter only when the hold expires: had the keeper gone on
    // renewing, the wait would never end; had it released, it would end at once.
    let request = acquire("team/j", 4);
    let grant = client.acquire_with_wait(&ns, "left", &request, Duration::from_secs(20)).await.expect("granted");
    assert_eq!(grant.fencing_token, 2, "a new tenure after the expiry");
    let acquired_at = grant.acquired_at.expect("the grant says when");
    assert!(
        acquired_at >= last_renew + chrono::TimeDelta::seconds(4),
        "granted at {acquired_at}, before the abandoned hold (renewed {last_renew}) expired"
    );
    assert_eq!(reports.all().len(), reported, "no renew was reported after abandon");
}

#[tokio::test]
async fn keeper_reports_a_hung_renew_as_timed_out_and_a_refused_connection_as_an_error() {
    let env = Env::start("keeper-reports").await;
    let ns = env.ns.name.clone();
    let (proxy, client) = proxied_client(&env);
    let reports = Reports::default();
    let options = reports.observe(
        KeeperOptions::new(&ns, "reported", "team/k", Duration::from_secs(8))
            .margin(Duration::from_secs(1))
            .heartbeat(Duration::from_secs(1))
            .watch(false),
    );
    let keeper = LeaseKeeper::acquire(client, options).await.expect("acquire");
    reports.wait_for(RenewResult::Renewed, 0).await;

    let seen = reports.all().len();
    proxy.set_mode(Mode::Blackhole);
    let timed_out = reports.wait_for(RenewResult::TimedOut, seen).await;
    assert!(timed_out.latency > Duration::ZERO, "{timed_out:?}");

    let seen = reports.all().len();
    proxy.set_mode(Mode::Reset);
    reports.wait_for(RenewResult::Error, seen).await;

    let seen = reports.all().len();
    proxy.set_mode(Mode::Pass);
    reports.wait_for(RenewResult::Renewed, seen).await;
    assert!(keeper.is_held(), "held again after the link healed: {:?}", reports.all());
    keeper.release().await.expect("release");
}
