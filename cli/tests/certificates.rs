//! `berth` explains a refused server certificate in its one error line, with
//! what to fix, and exits 1 as for any connection error: against a real TLS
//! listener per kind of bad certificate (`berth_testenv::bad_tls`), and
//! against the real apiserver binary serving a CA certificate as its own
//! (run `cargo build -p berth-apiserver` first).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_testenv::apiserver::{ApiServer, Tenant};
use berth_testenv::bad_tls::{BadCertificate, BadTlsServer};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// `berth <args>` against `url` with `ca_file`, and nothing from the environment.
fn berth(url: &str, ca_file: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BERTH);
    for var in ["BERTH_API_KEY", "BERTH_API_KEY_FILE", "BERTH_CA_FILE", "BERTH_LOG", "BERTH_NAMESPACE"] {
        cmd.env_remove(var);
    }
    cmd.args(["--api-server", url, "--ca-file", ca_file.to_str().expect("UTF-8 path")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("berth runs")
}

/// The one error line of a run that failed with exit code 1.
#[track_caller]
fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = stderr.trim_end();
    assert!(!line.contains('\n') && line.starts_with("berth: "), "not one error line: {stderr}");
    line.to_owned()
}

#[tokio::test]
async fn each_refused_certificate_is_explained_with_its_fix_in_one_line() {
    let fixes = [
        (BadCertificate::CaUsedAsLeaf, "issue a leaf certificate for the server's address signed by the CA"),
        (BadCertificate::UnknownCa, "give --ca-file / --berth-ca-file the CA that signed it"),
        (BadCertificate::BadSignature, "that CA's key did not sign it"),
        (BadCertificate::WrongName, "reissue it with the subjectAltName IP:127.0.0.1"),
        (BadCertificate::Expired, "expired at 2020-01-02T00:00:00Z"),
        (BadCertificate::NotYetValid, "valid from 2090-01-01T00:00:00Z"),
        (BadCertificate::SignedByLeaf, "issue it from a CA certificate"),
    ];
    for (kind, fix) in fixes {
        let server = BadTlsServer::start(kind).await;
        let line = error_line(&berth(&server.url, &server.ca_file, &["ping"]));
        assert!(line.contains(fix), "{kind:?}: {fix:?} missing from: {line}");
    }
}

#[tokio::test]
async fn apiserver_serving_its_ca_certificate_is_explained() {
    let mut server = ApiServer::start(vec![Tenant::new("team", &[])], &[], &[]);
    server.kill();
    BadCertificate::CaUsedAsLeaf.write(&server.dir);
    server.restart();
    let output = berth(&server.url, &server.ca_file, &["lease", "list", "--api-key", server.key("team")]);
    let line = error_line(&output);
    assert!(line.starts_with("berth: lease list -n default: "), "{line}");
    assert!(line.contains("the server presents a CA certificate as its own"), "{line}");
    assert!(line.contains(&format!("--ca-file / --berth-ca-file names ({})", server.ca_file.display())), "{line}");
}
