//! Member mode against a Berth apiserver whose certificate is refused: the
//! operator's log says what is wrong and what to fix. The Berth side is a
//! real TLS listener serving a CA certificate as its own
//! (`berth_testenv::bad_tls`); the member is the test control plane.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use berth_testenv::TestNamespace;
use berth_testenv::bad_tls::{BadCertificate, BadTlsServer};
use support::{Operator, create_lease, cronjob_target, eventually};

#[tokio::test]
async fn member_mode_logs_how_to_fix_a_berth_apiserver_serving_its_ca_certificate() {
    let ns = TestNamespace::new("member-cert").await;
    let berth = BadTlsServer::start(BadCertificate::CaUsedAsLeaf).await;
    let ca_file = berth.ca_file.to_str().expect("UTF-8 path");
    let key_file = std::env::temp_dir().join(format!("berth-member-cert-key-{}", ns.name));
    std::fs::write(&key_file, "unused: the handshake fails first\n").expect("key file writes");
    let key_file = key_file.to_str().expect("UTF-8 path");
    let flags = [
        "--berth-api-server",
        &berth.url,
        "--berth-api-key-file",
        key_file,
        "--berth-ca-file",
        ca_file,
        "--cluster-id",
        "east",
    ];
    let operator = Operator::start(&ns.name, &flags);
    create_lease(&ns, "claim", cronjob_target("absent")).await;
    eventually("the operator explains the refused certificate", Duration::from_secs(60), || async {
        let logs = operator.logs();
        (logs.contains("the server presents a CA certificate as its own")
            && logs.contains(&format!("signed by the CA that --ca-file / --berth-ca-file names ({ca_file})")))
        .then_some(())
    })
    .await;
    // The same error again on every retry is not logged again.
    eventually("three more acquires fail", Duration::from_secs(60), || async {
        (operator.metric("berth_operator_member_acquire_duration_seconds_count").await >= 4.0).then_some(())
    })
    .await;
    let logged = operator.logs().matches("the server presents a CA certificate as its own").count();
    assert_eq!(logged, 1, "the explanation was logged {logged} times:\n{}", operator.logs());
    std::fs::remove_file(key_file).expect("key file removes");
}
