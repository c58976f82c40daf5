//! The apiserver and the operator say the same thing: a bind address of `0`
//! disables a listener, `/metrics` has one content type, and both log JSON
//! by default, as their `--help` says.

// Shared with tests/operator.rs; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::process::Command;

use berth_api::serving::METRICS_CONTENT_TYPE;
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant, http_status};
use support::Operator;

fn help(binary: &std::path::Path) -> String {
    let output = Command::new(binary).arg("--help").output().expect("--help runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

fn content_type(port: u16) -> String {
    let (code, headers, _) = berth_testenv::http_get_with_headers(port, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    headers.into_iter().find(|(name, _)| name == "content-type").map(|(_, v)| v).expect("a content type")
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

#[tokio::test]
async fn both_binaries_read_bind_addresses_serve_metrics_and_log_alike() {
    let operator_binary = std::path::Path::new(env!("CARGO_BIN_EXE_operator"));
    for binary in [operator_binary.to_path_buf(), berth_testenv::apiserver::binary()] {
        let text = help(&binary).split_whitespace().collect::<Vec<_>>().join(" ");
        for flag in ["--metrics-bind-address", "--health-probe-bind-address"] {
            let described = text.split(flag).nth(2).or_else(|| text.split(flag).nth(1)).unwrap_or_default();
            assert!(described.contains("or 0 to disable"), "{}: {flag}: {text}", binary.display());
        }
        let log_format = text.split("--log-format").nth(1).unwrap_or_default();
        assert!(log_format.contains("[default: json]"), "{}: {text}", binary.display());
    }

    let ns = TestNamespace::new("agree").await;
    let operator = Operator::start(&ns.name, &[]);
    assert_eq!(content_type(operator.metrics_port), METRICS_CONTENT_TYPE);
    let tenants = vec![Tenant::new("east", &[&ns.name])];
    let apiserver = ApiServer::start(tenants.clone(), &[&ns.name], &[]);
    assert_eq!(content_type(port(&apiserver.metrics_url)), METRICS_CONTENT_TYPE);

    // `0` disables the apiserver's metrics listener, as it does the operator's.
    let without_metrics = ApiServer::start(tenants, &[&ns.name], &["--metrics-bind-address=0"]);
    assert_eq!(http_status(&without_metrics.health_url, "/readyz"), Some(200));
    assert_eq!(http_status(&without_metrics.metrics_url, "/metrics"), None, "nothing listens for metrics");
}
