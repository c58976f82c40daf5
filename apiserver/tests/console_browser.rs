//! The web console in a real headless Chromium (WebDriver), against the
//! `apiserver` binary and the operator on the real control plane: sign-in,
//! the live table, the lease page, tenant isolation, a bad key, a lost
//! connection, holder names of markup, the holding cluster in member mode,
//! and the security headers. It also measures the time from a
//! REST acquire to the row changing in the page, and saves the screenshots
//! of docs/console.md (under `target/screenshots`, or where
//! `BERTH_SCREENSHOTS_DIR` says: `make screenshots` writes docs/).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_api::BerthLease;
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::browser::{Browser, LogEntry};
use berth_testenv::clusters::Cluster;
use berth_testenv::operator::{self, Operator};
use common::{https_client, https_client_builder, post_json};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::PostParams;
use serde_json::{Value, json};

/// Failure bound for one observed page state; it normally takes milliseconds.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How many acquires (and as many releases) the latency figure is the median of.
const MEASURED: usize = 12;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn lease_url(server: &ApiServer, ns: &str, name: &str, verb: &str) -> String {
    format!("{}/v1alpha1/namespaces/{ns}/leases/{name}/{verb}", server.url)
}

/// Returns `updatedAt` (ms) of row `key` once it shows `token` and `state`, else null.
const ROW_SHOWS: &str = r#"
    const tr = document.querySelector(`#lease-rows tr[data-key="${arguments[0]}"]`);
    return tr && tr.dataset.token === String(arguments[1]) && tr.dataset.state === arguments[2]
        ? Number(tr.dataset.updatedAt) : null;"#;

/// Records every row key the table ever shows, and marks this page load.
const RECORD_ROWS: &str = r#"
    window.seenRows = new Set();
    window.pageLoad = 'first';
    const record = () => document.querySelectorAll('#lease-rows tr').forEach((tr) => window.seenRows.add(tr.dataset.key));
    new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true});"#;

async fn sign_in(browser: &Browser, server: &ApiServer, key: &str) {
    browser.goto(&format!("{}/console/", server.url)).await;
    browser.execute(RECORD_ROWS, vec![]).await;
    browser.wait_for("the sign-in form", "return !document.getElementById('login').hidden", vec![], PAGE_TIMEOUT).await;
    browser.type_into("#api-key", key).await;
    browser.click("#login-form button[type=submit]").await;
}

/// Errors in the browser console, except those `allowed` says are expected.
fn errors(log: &[LogEntry], allowed: impl Fn(&LogEntry) -> bool) -> Vec<LogEntry> {
    log.iter().filter(|e| e.level == "SEVERE" && !allowed(e)).cloned().collect()
}

fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::test]
async fn console_follows_the_tenants_leases_live_and_never_shows_another_tenants() {
    let (ns, other) = (TestNamespace::new("team-a").await, TestNamespace::new("team-b").await);
    let server = ApiServer::start(
        vec![Tenant::new("east", &[&ns.name]), Tenant::new("west", &[&ns.name, &other.name])],
        &[&ns.name, &other.name],
        &[],
    );
    let _operator = Operator::start(&operator::binary(), &berth_testenv::kubeconfig_path(), &[&ns.name], &[]);
    let http = https_client(&server.ca_file);
    let (east, west) = (server.key("east").to_owned(), server.key("west").to_owned());
    let post = |name: &str, verb: &str, ns: &str, key: &str, body: Value| {
        let (http, url, key) = (http.clone(), lease_url(&server, ns, name, verb), key.to_owned());
        async move { post_json(&http, &url, &key, &body).await }
    };

    // A lease with a CronJob target, resumed by the operator while held.
    let cronjob: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "ingest-pipeline"},
        "spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "ingest", "image": "busybox", "command": ["true"]}]}}}}}
    }))
    .unwrap();
    ns.api::<CronJob>().create(&PostParams::default(), &cronjob).await.unwrap();
    let coordinator: BerthLease = serde_json::from_value(json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
        "metadata": {"name": "ingest-coordinator"},
        "spec": {"ttlSeconds": 90, "target": {"apiVersion": "batch/v1", "kind": "CronJob", "name": "ingest-pipeline"},
                 "acquireAction": {"suspend": false}, "releaseAction": {"suspend": true}}
    }))
    .unwrap();
    ns.api::<BerthLease>().create(&PostParams::default(), &coordinator).await.unwrap();
    let (status, held) =
        post("ingest-coordinator", "acquire", &ns.name, &east, json!({"holder": "east/worker-1", "ttlSeconds": 90}))
            .await;
    assert_eq!((status, held["acquired"].as_bool()), (200, Some(true)), "{held}");
    let shared = json!({"holder": "east/reader-1", "ttlSeconds": 45, "semantics": "at-least-once", "maxHolders": 3});
    assert_eq!(post("report-cache", "acquire", &ns.name, &east, shared).await.1["acquired"], true);
    let second = json!({"holder": "east/reader-2", "ttlSeconds": 30});
    assert_eq!(post("report-cache", "acquire", &ns.name, &east, second).await.1["acquired"], true);
    // West's leases: one in the namespace east uses (labelled west), one elsewhere.
    for (name, namespace) in [("west-secret", &ns.name), ("west-elsewhere", &other.name)] {
        let (_, reply) = post(name, "acquire", namespace, &west, json!({"holder": "west", "ttlSeconds": 60})).await;
        assert_eq!(reply["acquired"], true, "{reply}");
    }

    let browser = Browser::start(1280, 760).await;
    sign_in(&browser, &server, &east).await;
    let key = |name: &str| format!("{}/{name}", ns.name);
    browser
        .wait_for(
            "the two leases of east in the table",
            "const keys = [...document.querySelectorAll('#lease-rows tr')].map((tr) => tr.dataset.key); \
             return keys.length === 2 && keys.join(',') === arguments[0];",
            vec![json!(format!("{},{}", key("ingest-coordinator"), key("report-cache")))],
            PAGE_TIMEOUT,
        )
        .await;
    assert_eq!(browser.execute("return document.getElementById('connection').dataset.state", vec![]).await, "live");

    // The countdown runs: its text changes while nothing else does.
    let countdown =
        "return document.querySelector(`#lease-rows tr[data-key=\"${arguments[0]}\"] .expires`).textContent";
    let first = browser.execute(countdown, vec![json!(key("ingest-coordinator"))]).await;
    assert!(first.as_str().unwrap().ends_with(" s"), "{first}");
    browser
        .wait_for(
            "the countdown to change",
            &format!("{countdown} !== arguments[1]"),
            vec![json!(key("ingest-coordinator")), first],
            PAGE_TIMEOUT,
        )
        .await;

    // REST acquires and releases appear without a reload; measure each.
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for round in 0..MEASURED {
        let holder = format!("east/batch-{round}");
        let started = now_ms();
        let (_, granted) =
            post("nightly-batch", "acquire", &ns.name, &east, json!({"holder": holder, "ttlSeconds": 60})).await;
        let token = granted["fencingToken"].as_i64().unwrap_or_else(|| panic!("granted: {granted}"));
        let shown_at = browser
            .wait_for(
                "the acquire in the row",
                ROW_SHOWS,
                vec![json!(key("nightly-batch")), json!(token), json!("held")],
                PAGE_TIMEOUT,
            )
            .await;
        acquires.push(shown_at.as_i64().unwrap() - started);
        // West changes its leases meanwhile: the page must never show them.
        let west_body = json!({"holder": "west", "fencingToken": round as i64 + 1});
        post("west-secret", "release", &ns.name, &west, west_body).await;
        post("west-secret", "acquire", &ns.name, &west, json!({"holder": "west", "ttlSeconds": 60})).await;

        let started = now_ms();
        let (status, _) =
            post("nightly-batch", "release", &ns.name, &east, json!({"holder": holder, "fencingToken": token})).await;
        assert_eq!(status, 204);
        let shown_at = browser
            .wait_for(
                "the release in the row",
                ROW_SHOWS,
                vec![json!(key("nightly-batch")), json!(token), json!("released")],
                PAGE_TIMEOUT,
            )
            .await;
        releases.push(shown_at.as_i64().unwrap() - started);
    }
    let holders = "return document.querySelector(`#lease-rows tr[data-key=\"${arguments[0]}\"]`).dataset.holders";
    assert_eq!(browser.execute(holders, vec![json!(key("nightly-batch"))]).await, "", "a released row shows no holder");
    println!(
        "REST to page, ms over {MEASURED} rounds: acquire median {} (all {acquires:?}); release median {} (all {releases:?})",
        median(&mut acquires.clone()),
        median(&mut releases.clone())
    );

    // One more acquire, left held, so the table shows a lease that just changed hands.
    post("nightly-batch", "acquire", &ns.name, &east, json!({"holder": "east/batch-final", "ttlSeconds": 60})).await;
    browser
        .wait_for(
            "the changed-hands mark",
            "const tr = document.querySelector(`#lease-rows tr[data-key=\"${arguments[0]}\"]`); \
             return tr && tr.dataset.state === 'held' && tr.classList.contains('changed');",
            vec![json!(key("nightly-batch"))],
            PAGE_TIMEOUT,
        )
        .await;
    // The test writes its screenshots under the target directory, so a run
    // leaves the tree as it found it; `make screenshots` points this at docs/.
    let docs = std::env::var_os("BERTH_SCREENSHOTS_DIR").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| berth_testenv::repo_root().join("target"), std::path::PathBuf::from)
                .join("screenshots")
        },
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("console.png"), browser.screenshot().await).unwrap();

    // Nothing of west's ever appeared, and the page was never reloaded.
    let seen = browser.execute("return [...window.seenRows].sort()", vec![]).await;
    let seen: Vec<String> = serde_json::from_value(seen).unwrap();
    assert_eq!(seen, [key("ingest-coordinator"), key("nightly-batch"), key("report-cache")]);
    assert_eq!(browser.execute("return window.pageLoad", vec![]).await, "first");

    // Filters: free text, then a state no lease is in.
    let shown = "return [...document.querySelectorAll('#lease-rows tr')].map((tr) => tr.dataset.key).join(',')";
    browser.type_into("#filter-text", "reader-2").await;
    browser
        .wait_for(
            "the text filter",
            &format!("{shown} === arguments[0]"),
            vec![json!(key("report-cache"))],
            PAGE_TIMEOUT,
        )
        .await;
    let by_state = "const s = document.getElementById('filter-state'); s.value = arguments[0]; \
                    s.dispatchEvent(new Event('change')); const t = document.getElementById('filter-text'); \
                    t.value = ''; t.dispatchEvent(new Event('input'));";
    browser.execute(by_state, vec![json!("expired")]).await;
    let empty = browser
        .wait_for(
            "the filtered-out message",
            "return document.getElementById('lease-table').hidden && document.getElementById('empty').textContent",
            vec![],
            PAGE_TIMEOUT,
        )
        .await;
    assert_eq!(empty, "No lease matches the filters.");
    browser.execute(by_state, vec![json!("")]).await;

    // The lease page: holder bars, token, target and the operator's last action, conditions.
    browser.set_window_size(1280, 1180).await;
    browser.click(&format!("#lease-rows tr[data-key=\"{}\"] a", key("ingest-coordinator"))).await;
    let detail = browser
        .wait_for(
            "the operator's action and conditions on the lease page",
            "const body = document.getElementById('detail-body'); \
             if (document.getElementById('detail').hidden || !body.textContent.includes('acquire at')) return null; \
             return {title: document.getElementById('detail-title').textContent, text: body.textContent, \
                     bars: [...body.querySelectorAll('progress')].map((p) => p.value > 0 && p.value <= p.max), \
                     conditions: [...body.querySelectorAll('tbody th')].map((th) => th.textContent)};",
            vec![],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(detail["title"], format!("ingest-coordinator · {}", ns.name));
    assert_eq!(detail["bars"], json!([true]), "one holder bar, running: {detail}");
    let text = detail["text"].as_str().unwrap();
    for expected in ["east/worker-1", "Fencing token1", "CronJob/ingest-pipeline (batch/v1)", "Held"] {
        assert!(text.contains(expected), "{expected:?} on the lease page: {text}");
    }
    assert!(detail["conditions"].as_array().unwrap().contains(&json!("TargetReady")), "{detail}");
    std::fs::write(docs.join("console-lease.png"), browser.screenshot().await).unwrap();

    // A phone-sized window: rows become cards, and nothing scrolls sideways.
    browser.execute("location.hash = '#/'", vec![]).await;
    browser.set_window_size(390, 844).await;
    browser
        .wait_for(
            "the table laid out for a phone",
            "return document.querySelectorAll('#lease-rows tr').length === 3 && innerWidth <= 420 \
                && document.documentElement.scrollWidth <= innerWidth \
                && getComputedStyle(document.querySelector('#lease-rows td')).display === 'block';",
            vec![],
            PAGE_TIMEOUT,
        )
        .await;
    std::fs::write(docs.join("console-phone.png"), browser.screenshot().await).unwrap();

    // Every form control has a label.
    let unlabelled = browser
        .execute("return [...document.querySelectorAll('input, select')].filter((c) => c.labels.length === 0).map((c) => c.id)", vec![])
        .await;
    assert_eq!(unlabelled, json!([]));
    let problems = errors(&browser.console_log().await, |_| false);
    assert!(problems.is_empty(), "browser console errors: {problems:?}");
    browser.quit().await;
}

#[tokio::test]
async fn a_wrong_key_shows_an_error_not_an_empty_table() {
    let ns = TestNamespace::new("console-badkey").await;
    let server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let browser = Browser::start(1024, 700).await;
    sign_in(&browser, &server, "not-a-key").await;
    let shown = browser
        .wait_for(
            "the refusal",
            "const error = document.getElementById('login-error').textContent; \
             return error && {message: error, table: !document.getElementById('lease-table').hidden, \
                              empty: !document.getElementById('empty').hidden, \
                              stored: sessionStorage.getItem('berth.apiKey')};",
            vec![],
            PAGE_TIMEOUT,
        )
        .await;
    assert_eq!(shown["message"], "The API key was refused: unauthorized (HTTP 401).", "{shown}");
    assert_eq!((shown["table"].as_bool(), shown["empty"].as_bool()), (Some(false), Some(false)), "{shown}");
    assert_eq!(shown["stored"], Value::Null, "a refused key is not kept");
    // The browser reports the 401 itself; nothing else may fail.
    let problems = errors(&browser.console_log().await, |e| e.message.contains("status of 401"));
    assert!(problems.is_empty(), "browser console errors: {problems:?}");
    browser.quit().await;
}

#[tokio::test]
async fn a_lost_connection_is_shown_and_the_page_reconnects_by_itself() {
    let ns = TestNamespace::new("console-lost").await;
    let mut server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let http = https_client(&server.ca_file);
    let key = server.key("east").to_owned();
    let browser = Browser::start(1024, 700).await;
    sign_in(&browser, &server, &key).await;
    let empty = "return document.getElementById('connection').dataset.state === 'live' \
                 && !document.getElementById('empty').hidden && document.getElementById('empty').textContent";
    let message = browser.wait_for("the empty state", empty, vec![], PAGE_TIMEOUT).await;
    assert!(message.as_str().unwrap().starts_with("No leases yet"), "{message}");

    server.kill();
    let lost = browser
        .wait_for(
            "the lost connection",
            "const c = document.getElementById('connection'); return c.dataset.state === 'lost' && c.textContent;",
            vec![],
            PAGE_TIMEOUT,
        )
        .await;
    assert!(lost.as_str().unwrap().starts_with("Connection lost"), "{lost}");
    server.restart();
    let (_, granted) = post_json(
        &http,
        &lease_url(&server, &ns.name, "after-restart", "acquire"),
        &key,
        &json!({"holder": "east", "ttlSeconds": 60}),
    )
    .await;
    let token = granted["fencingToken"].as_i64().unwrap();
    browser
        .wait_for(
            "the reconnected page to show the new lease",
            ROW_SHOWS,
            vec![json!(format!("{}/after-restart", ns.name)), json!(token), json!("held")],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(browser.execute("return document.getElementById('connection').dataset.state", vec![]).await, "live");
    // The broken and refused watch connections while the server was down are the only errors.
    let problems = errors(&browser.console_log().await, |e| {
        e.message.contains("/v1alpha1/leases?watch=1 - Failed to load resource: net::ERR_")
    });
    assert!(problems.is_empty(), "browser console errors: {problems:?}");
    browser.quit().await;
}

/// Holder identities of markup and punctuation; the last three differ only where a name-derived id would not.
const ODD_HOLDERS: [&str; 5] =
    ["demo/<img src=x onerror=alert(1)>", "demo/\"quoted\" & 'single'", "demo/team/a", "demo/team.a", "demo/team_a"];

/// The lease page of `arguments[0]` (`<ns>/<name>`) once it shows `arguments[1]`
/// holders: each holder's identity, its own text, what its bar is labelled
/// by, and the holding-cluster line.
const LEASE_PAGE: &str = r#"
    const body = document.getElementById('detail-body');
    const [ns, name] = arguments[0].split('/');
    if (document.getElementById('detail').hidden
        || document.getElementById('detail-title').textContent !== `${name} · ${ns}`) return null;
    const items = [...body.querySelectorAll('ul.holders > li')];
    if (items.length !== arguments[1]) return null;
    const cluster = [...body.querySelectorAll('h3')].find((h) => h.textContent.startsWith('Holding cluster'));
    return {
        holders: items.map((li) => {
            const bar = li.querySelector('progress');
            const label = document.getElementById(bar.getAttribute('aria-labelledby'));
            return {identity: li.dataset.identity, shown: li.querySelector('strong').textContent,
                    barLabel: label && label.textContent, barInside: li.contains(label)};
        }),
        ids: [...document.querySelectorAll('[id]')].map((e) => e.id),
        cluster: cluster.nextElementSibling.textContent,
    };"#;

#[tokio::test]
async fn holder_names_are_shown_as_text_and_only_member_mode_holders_as_clusters() {
    // The coordination plane: the Berth apiserver member cluster east holds global leases on.
    let coordination = TestNamespace::new("console-member").await;
    let ns = coordination.name.clone();
    let berth = ApiServer::start(vec![Tenant::new("east", &[&ns])], &[&ns], &[]);
    let key_file = berth.dir.join("east.key");
    std::fs::write(&key_file, berth.key("east")).unwrap();

    // The member plane east: a claim kept by the operator in member mode, and
    // a namespace of ordinary holders that the operator does not watch.
    let east = Cluster::up("east").expect("the east control plane starts");
    let claims = east.namespace_named(&ns).await.expect("the claims' namespace on east");
    let plain = east.namespace("console-plain").await.expect("the plain namespace on east");
    let claim: BerthLease = serde_json::from_value(json!({
        "apiVersion": "berth.skaphos.io/v1alpha1", "kind": "BerthLease",
        "metadata": {"name": "ingest"}, "spec": {"ttlSeconds": 30}
    }))
    .unwrap();
    claims.api::<BerthLease>().create(&PostParams::default(), &claim).await.unwrap();
    let member_flags = [
        "--berth-api-server",
        &berth.url,
        "--berth-api-key-file",
        key_file.to_str().unwrap(),
        "--berth-ca-file",
        berth.ca_file.to_str().unwrap(),
        "--cluster-id",
        "east",
    ];
    let _member = Operator::start(&operator::binary(), &east.kubeconfig, &[&ns], &member_flags);

    // The console of an apiserver on east, signed in as tenant demo.
    let console =
        ApiServer::start_as(&east.kubeconfig, vec![Tenant::new("demo", &[&ns, &plain.name])], &[&ns, &plain.name], &[]);
    let http = https_client(&console.ca_file);
    let demo = console.key("demo").to_owned();
    let acquire = |name: &str, body: Value| {
        let (http, url, key) = (http.clone(), lease_url(&console, &plain.name, name, "acquire"), demo.clone());
        async move { post_json(&http, &url, &key, &body).await }
    };
    let (_, solo) = acquire("solo", json!({"holder": "demo", "ttlSeconds": 300})).await;
    assert_eq!(solo["acquired"], true, "{solo}");
    for holder in ODD_HOLDERS {
        let body = json!({"holder": holder, "ttlSeconds": 300, "semantics": "at-least-once", "maxHolders": 5});
        let (_, reply) = acquire("crowded", body).await;
        assert_eq!(reply["acquired"], true, "{holder}: {reply}");
    }

    let browser = Browser::start(1280, 900).await;
    sign_in(&browser, &console, &demo).await;
    browser.execute("window.alert = () => { window.alerted = true; };", vec![]).await;
    let (claim_key, solo_key, crowded_key) =
        (format!("{ns}/ingest"), format!("{}/solo", plain.name), format!("{}/crowded", plain.name));
    browser
        .wait_for(
            "east's claim, held in member mode",
            "const tr = document.querySelector(`#lease-rows tr[data-key=\"${arguments[0]}\"]`); \
             return tr && tr.dataset.state === 'held' && tr.dataset.holders === 'east';",
            vec![json!(claim_key)],
            Duration::from_secs(60),
        )
        .await;

    // Markup and punctuation are text, and every holder has a bar of its own.
    browser.execute("location.hash = `#/leases/${arguments[0]}`", vec![json!(crowded_key)]).await;
    let page =
        browser.wait_for("the crowded lease page", LEASE_PAGE, vec![crowded_key.into(), 5.into()], PAGE_TIMEOUT).await;
    let mut shown: Vec<String> =
        page["holders"].as_array().unwrap().iter().map(|h| h["shown"].as_str().unwrap().into()).collect();
    shown.sort();
    let mut expected = ODD_HOLDERS.map(String::from);
    expected.sort();
    assert_eq!(shown, expected, "{page}");
    for holder in page["holders"].as_array().unwrap() {
        assert_eq!(holder["identity"], holder["shown"], "{holder}");
        assert_eq!(holder["barLabel"], holder["shown"], "each bar is labelled by its own holder: {holder}");
        assert_eq!(holder["barInside"], true, "{holder}");
    }
    let ids: Vec<String> = serde_json::from_value(page["ids"].clone()).unwrap();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "element ids are unique: {ids:?}");
    let injected =
        browser.execute("return [document.querySelectorAll('img').length, window.alerted === true]", vec![]).await;
    assert_eq!(injected, json!([0, false]), "no element was injected and no script ran");

    // A bare tenant name is not a cluster; the member-mode claim's holder is.
    browser.execute("location.hash = `#/leases/${arguments[0]}`", vec![json!(solo_key)]).await;
    let page = browser.wait_for("the solo lease page", LEASE_PAGE, vec![solo_key.into(), 1.into()], PAGE_TIMEOUT).await;
    assert_eq!(page["holders"][0]["shown"], "demo", "{page}");
    assert_eq!(page["cluster"], "none: this lease has no member-mode status", "a bare tenant name: {page}");
    browser.execute("location.hash = `#/leases/${arguments[0]}`", vec![json!(claim_key)]).await;
    let page =
        browser.wait_for("the claim's lease page", LEASE_PAGE, vec![claim_key.into(), 1.into()], PAGE_TIMEOUT).await;
    assert_eq!(page["cluster"], "east", "{page}");

    let problems = errors(&browser.console_log().await, |_| false);
    assert!(problems.is_empty(), "browser console errors: {problems:?}");
    browser.quit().await;
}

#[tokio::test]
async fn console_responses_carry_the_security_headers_and_assets_are_embedded() {
    let ns = TestNamespace::new("console-headers").await;
    let server = ApiServer::start(vec![Tenant::new("east", &[&ns.name])], &[&ns.name], &[]);
    let http = https_client(&server.ca_file);
    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let reply = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| reply.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), content_type, "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    let no_redirects =
        https_client_builder(&server.ca_file).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let reply = no_redirects.get(format!("{}/console", server.url)).send().await.unwrap();
    assert_eq!((reply.status().as_u16(), reply.headers()["location"].to_str().unwrap()), (308, "/console/"));
    let page = http.get(format!("{}/console/", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="app.js"></script>"#), "{page}");
    let missing = http.get(format!("{}/console/nope.js", server.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
