//! A refused server certificate is explained: what is wrong and how to fix
//! it, one case per kind of bad certificate, against a real TLS listener
//! (`berth_testenv::bad_tls`). No control plane is needed.

use berth_client::{Client, Error};
use berth_testenv::bad_tls::{BadCertificate, BadTlsServer};

/// The message of pinging a server that serves `kind`, given its CA file
/// (or the system trust store when `with_ca_file` is false).
async fn refusal(kind: BadCertificate, with_ca_file: bool) -> (String, BadTlsServer) {
    let server = BadTlsServer::start(kind).await;
    let mut builder = Client::builder(&server.url);
    if with_ca_file {
        builder = builder.ca_file(&server.ca_file).expect("CA file reads");
    }
    let err = builder.build().unwrap().ping().await.expect_err("the certificate is refused");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    (err.to_string(), server)
}

fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[tokio::test]
async fn ca_certificate_served_as_the_servers_own_says_to_issue_a_leaf() {
    let (message, server) = refusal(BadCertificate::CaUsedAsLeaf, true).await;
    assert_says(
        &message,
        &[
            "the server presents a CA certificate as its own",
            "issue a leaf certificate",
            "--ca-file / --berth-ca-file",
            server.ca_file.to_str().unwrap(),
        ],
    );
}

#[tokio::test]
async fn unknown_ca_names_the_ca_file_that_was_used() {
    let (message, server) = refusal(BadCertificate::UnknownCa, true).await;
    assert_says(
        &message,
        &[
            "signed by an unknown certificate authority",
            &format!("not by the CA in {}", server.ca_file.display()),
            "give --ca-file / --berth-ca-file the CA that signed it",
        ],
    );
}

#[tokio::test]
async fn unknown_ca_says_the_system_trust_store_was_used() {
    let (message, _server) = refusal(BadCertificate::UnknownCa, false).await;
    assert_says(
        &message,
        &[
            "signed by an unknown certificate authority",
            "system trust store (no CA file was given)",
            "give --ca-file / --berth-ca-file the CA that signed it",
        ],
    );
}

#[tokio::test]
async fn certificate_signed_by_another_ca_of_the_same_name_is_a_bad_signature() {
    let (message, server) = refusal(BadCertificate::BadSignature, true).await;
    assert_says(
        &message,
        &[
            &format!("names a CA of the CA file {} as its issuer", server.ca_file.display()),
            "that CA's key did not sign it",
            "give --ca-file / --berth-ca-file the CA that signed it",
        ],
    );
}

#[tokio::test]
async fn wrong_name_says_which_name_was_asked_for_and_which_it_has() {
    let (message, _server) = refusal(BadCertificate::WrongName, true).await;
    assert_says(
        &message,
        &[
            "not valid for 127.0.0.1, the name asked for",
            "it names DNS:berth.example.com",
            "reissue it with the subjectAltName IP:127.0.0.1",
        ],
    );
}

#[tokio::test]
async fn expired_certificate_says_when_it_expired() {
    let (message, _server) = refusal(BadCertificate::Expired, true).await;
    assert_says(&message, &["expired at 2020-01-02T00:00:00Z, and it is now", "renew it"]);
}

#[tokio::test]
async fn certificate_not_valid_yet_says_from_when_and_to_check_clocks() {
    let (message, _server) = refusal(BadCertificate::NotYetValid, true).await;
    assert_says(&message, &["not valid yet: it is valid from 2090-01-01T00:00:00Z, and it is now", "clock"]);
}

#[tokio::test]
async fn certificate_signed_by_a_leaf_says_to_issue_it_from_a_ca() {
    let (message, _server) = refusal(BadCertificate::SignedByLeaf, true).await;
    assert_says(&message, &["signed by a certificate that is not a CA", "issue it from a CA certificate"]);
}
